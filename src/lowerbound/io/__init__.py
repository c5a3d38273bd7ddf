"""io room (design.md)."""
