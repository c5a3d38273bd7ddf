"""Optional packages, imported where they are used; a missing one is one sentence naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UserError

EXTRA = 'pip install "lowerbound[adapters]"'


def require(package: str, purpose: str) -> ModuleType:
    """Import `package` or refuse with one sentence saying what needs it and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{purpose} needs the optional package {package}, which is not installed; "
                        f"install it with {EXTRA}.") from None
