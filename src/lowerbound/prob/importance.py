"""Importance-weighted bounds accumulated over chunks of draws (Burda et al. 2016, "Importance
Weighted Autoencoders"; for dequantization, Ho et al. 2019, "Flow++", sec. 3.2):

    -log P(x) <= -log (1/K) sum_k w_k,   w_k = p(x, u_k) / q(u_k | x),  u_k ~ q

in expectation, tighter as K grows, against the K-draw average -(1/K) sum_k log w_k (the plain
bound with K draws).  The log-weights arrive in chunks [n, B] so that memory stays bounded; the
variance is the delta-method variance of the log of the mean weight, (K / ESS - 1) / (K - 1) with
ESS = (sum w)^2 / sum w^2: a first-order measure of the estimate's own noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class LogMeanExp:
    """Streaming log-mean-exp of log-weights over draws (dim 0), per example."""

    def __init__(self) -> None:
        self.k = 0
        self.lse: Tensor | None = None  # logsumexp of log w over the draws so far, [B]
        self.lse2: Tensor | None = None  # logsumexp of 2 log w, [B]
        self.total: Tensor | None = None  # sum of log w, [B]

    def add(self, log_w: Tensor) -> None:
        """log_w: [n, B] nats, n more draws for each of B examples."""
        lse, lse2, total = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0), log_w.sum(0)
        if self.lse is None:
            self.lse, self.lse2, self.total = lse, lse2, total
        else:
            self.lse = torch.logaddexp(self.lse, lse)
            self.lse2 = torch.logaddexp(self.lse2, lse2)
            self.total = self.total + total
        self.k += log_w.shape[0]

    def bound(self) -> Tensor:
        """[B] -log (1/K) sum_k w_k nats: the importance-weighted bound."""
        return math.log(self.k) - self.lse

    def plain_bound(self) -> Tensor:
        """[B] -(1/K) sum_k log w_k nats: the K-draw average of the plain (Jensen) bound."""
        return -self.total / self.k

    def variance(self) -> Tensor | None:
        """[B] delta-method variance of bound(), None with a single draw."""
        if self.k < 2:
            return None
        return ((self.k * torch.exp(self.lse2 - 2 * self.lse) - 1) / (self.k - 1)).clamp_min(0)
