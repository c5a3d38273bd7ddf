"""lowerbound: likelihood-based generative models trained and compared by the evidence lower bound."""

from .errors import UserError
from .prob.bound import Bound
from .prob.estimate import Estimate

__version__ = "0.1.0"
__all__ = ["Bound", "Estimate", "UserError", "__version__"]
