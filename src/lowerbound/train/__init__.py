"""train room (design.md)."""
