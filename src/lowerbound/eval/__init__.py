"""eval room (design.md)."""
