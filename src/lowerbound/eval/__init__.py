"""eval room (design.md): the likelihood of a split with its uncertainty, sample metrics, comparisons."""

from .likelihood import LikelihoodResult, likelihood
from .samples import sample_quality

__all__ = ["LikelihoodResult", "likelihood", "sample_quality"]
