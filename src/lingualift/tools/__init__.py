"""Tools around the method: the embedded default models (assets), the benchmark, the interactive page."""
