"""nets room (design.md)."""
