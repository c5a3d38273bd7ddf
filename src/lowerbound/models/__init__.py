"""One module per family, each a net plus its probabilistic story, keeping the contract in base.py."""

from .base import GenerativeModel
from .registry import build, get, names, register

__all__ = ["GenerativeModel", "build", "get", "names", "register"]
