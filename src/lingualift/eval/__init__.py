"""Evaluation: tasks, languages and tiers, answer extraction, the runner, the diagnostic, reports, the lm-eval plugin."""
