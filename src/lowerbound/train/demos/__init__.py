"""The demos of `lowerbound demo`: small, checkable experiments with the probability tools, one module each,
found by name in the registry (registry.py says how to add one)."""

from .registry import Demo, add_option, declare, get, names, register, run, summaries, to_json

__all__ = ["Demo", "add_option", "declare", "get", "names", "register", "run", "summaries", "to_json"]
