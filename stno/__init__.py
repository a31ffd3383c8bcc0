"""STNO: space-time video super-resolution with a neural operator."""

__version__ = "0.1.0"
