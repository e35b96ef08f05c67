"""The model: encoder / LLM components, the language alignment layer, the composite LinguaLiftModel, the warm start."""
