"""Data sets as integer levels (or continuous points with a known density), with fixed splits."""

from .base import Dataset, available, load, register

__all__ = ["Dataset", "available", "load", "register"]
