"""Pure probability: KL, entropy, cross-entropy, Bayes rule, Monte Carlo, ELBO/IWAE, reference models.

Everything returns an `Estimate` (value, stderr, num_samples, exact) in nats: closed forms are exact,
Monte Carlo results carry their standard error.
"""

from .bayes import bayes_rule, normal_normal_posterior
from .bound import Bound
from .estimate import Estimate
from .information import cross_entropy, entropy
from .kl import DEFAULT_NUM_SAMPLES, as_distribution, kl_divergence
from .latent_class import LatentClass, fit_em
from .montecarlo import draw, monte_carlo
from .reference import LinearGaussian
from .vi import ElboTerms, elbo, elbo_terms, iwae_bound

__all__ = [
    "Bound",
    "DEFAULT_NUM_SAMPLES",
    "ElboTerms",
    "Estimate",
    "LatentClass",
    "LinearGaussian",
    "as_distribution",
    "bayes_rule",
    "cross_entropy",
    "draw",
    "elbo",
    "elbo_terms",
    "entropy",
    "fit_em",
    "iwae_bound",
    "kl_divergence",
    "monte_carlo",
    "normal_normal_posterior",
]
