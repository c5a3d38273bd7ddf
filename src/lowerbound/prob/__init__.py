"""Pure probability: KL, entropy, cross-entropy, Bayes rule, Monte Carlo, ELBO/IWAE, reference models."""

from .bound import Bound
from .estimate import Estimate

__all__ = ["Bound", "Estimate"]
