"""lowerbound: likelihood-based generative models trained and compared by the evidence lower bound."""

from .errors import UserError

__version__ = "0.1.0"
__all__ = ["Bound", "Estimate", "UserError", "__version__", "load"]


def __getattr__(name: str):
    """Bound and Estimate on first use: `import lowerbound` (and so the CLI's start, which sets
    OpenMP's wait policy before torch loads) does not import torch."""
    if name == "Bound":
        from .prob.bound import Bound

        return Bound
    if name == "Estimate":
        from .prob.estimate import Estimate

        return Estimate
    raise AttributeError(f"module 'lowerbound' has no attribute {name!r}")


def load(path, checkpoint="best", device=None):
    """A ready model (eval mode) from a run directory or a model.safetensors export (issue 4).

    checkpoint: "best" (the best-validation export, default) or "last" (the latest training state).
    Imported lazily so `import lowerbound` stays light."""
    from .train.load import load as _load

    return _load(path, checkpoint, device)
