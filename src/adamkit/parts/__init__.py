"""Reusable stages of update rules: the shared math, written once."""
