"""Training: the YAML schema, per-stage freeze policies, the one training loop."""
