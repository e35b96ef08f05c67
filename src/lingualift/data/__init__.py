"""Data: prompt templates, instruction files and collation, bilingual lexicons, code-switching."""
