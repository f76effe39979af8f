"""Defenses against gradient leakage that are not plain gradient transforms (model-level defenses)."""
