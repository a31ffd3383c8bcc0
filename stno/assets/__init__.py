"""Embedded data files (the CC0 sample clip)."""
