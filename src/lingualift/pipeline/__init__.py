"""The end-to-end pipeline: assets -> lexicons -> data -> stage 1 -> stage 2 -> evaluate -> diagnose -> report."""
