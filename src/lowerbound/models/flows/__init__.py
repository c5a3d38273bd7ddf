"""The transforms of the `flow` family (models/flow.py): one interface, `Bijection`, for every arch.

base.py: the interface, composition and the per-channel affine layer (actnorm); vector.py: zuko's
neural spline, RealNVP and MAF transforms behind it; glow.py: the multi-scale image flow;
dequantizer.py: the conditional flow q(u | x) of variational dequantization (Flow++).
"""

from .base import ActNorm, Bijection, Compose, standard_normal_log_prob

__all__ = ["ActNorm", "Bijection", "Compose", "standard_normal_log_prob"]
