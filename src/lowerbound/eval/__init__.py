"""eval room (design.md): the likelihood of a split with its uncertainty, sample metrics, comparisons."""

from .likelihood import LikelihoodResult, likelihood

__all__ = ["LikelihoodResult", "likelihood"]
