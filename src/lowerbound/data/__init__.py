"""data room (design.md)."""
