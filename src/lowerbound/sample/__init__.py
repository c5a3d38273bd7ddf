"""sample room (design.md)."""
