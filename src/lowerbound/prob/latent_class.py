"""The latent-class model: a mixture of products of independent categoricals, fitted by variational EM.

    z ~ Categorical(pi),  x_d | z = c ~ Categorical(theta[c, d, :])  independently for d = 1..D

Its posterior p(z | x) is exact by Bayes rule over the C components (in log space, so likelihoods far
below 1e-300 are fine), which makes it the reference model of variational inference: EM is
coordinate ascent on the ELBO (Neal & Hinton 1998, "A view of the EM algorithm that justifies
incremental, sparse, and other variants"; Dempster, Laird & Rubin 1977).

    E-step: q(z | x) <- p(z | x; params)    the KL(q || posterior) becomes 0, so ELBO = log p(x)
    M-step: params <- argmax ELBO(q, params) [+ log Dirichlet prior: MAP smoothing]

Neither step can lower the objective (ELBO plus the log prior), so it never decreases.  Latent-class
analysis: Lazarsfeld & Henry 1968; as a density model of binary/discrete images, e.g. Frey 1998.

Pure probability: tensors in, tensors out; nothing here knows about nn.Module or data sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LatentClass:
    """log_weights: [C] log p(z = c).  log_probs: [C, D, K] log p(x_d = k | z = c).  Both normalized."""

    log_weights: Tensor
    log_probs: Tensor

    def __post_init__(self) -> None:
        if self.log_weights.dim() != 1 or self.log_probs.dim() != 3:
            raise ValueError("log_weights must be [C] and log_probs [C, D, K]")
        if self.log_probs.shape[0] != self.log_weights.shape[0]:
            raise ValueError(f"{self.log_weights.shape[0]} weights for {self.log_probs.shape[0]} components")
        for name, t, dim in (("log_weights", self.log_weights, 0), ("log_probs", self.log_probs, -1)):
            # loose enough for float32 parameters read back in float64
            if not torch.allclose(torch.logsumexp(t, dim), torch.zeros(()).to(t), atol=1e-4):
                raise ValueError(f"{name} must be normalized log-probabilities")

    @property
    def components(self) -> int:
        return self.log_probs.shape[0]

    @property
    def dims(self) -> int:
        return self.log_probs.shape[1]

    @property
    def levels(self) -> int:
        return self.log_probs.shape[2]

    def log_likelihood(self, x: Tensor) -> Tensor:
        """x: [B, D] long levels -> [B, C] log p(x | z = c) in nats (a sum of D gathered log-probs)."""
        table = self.log_probs.permute(1, 2, 0)  # [D, K, C]
        d = torch.arange(self.dims, device=x.device)
        return table[d, x].sum(1)  # table[d, x[b, d], :] -> [B, D, C] -> [B, C]

    def log_joint(self, x: Tensor) -> Tensor:
        """[B, D] -> [B, C] log p(x, z = c)."""
        return self.log_likelihood(x) + self.log_weights

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Bayes rule in log space: ([B, C] log p(z | x), [B] log p(x)) in nats."""
        return _bayes(self.log_joint(x))

    def log_prob(self, x: Tensor) -> Tensor:
        """[B, D] -> [B] exact log p(x) in nats."""
        return self.posterior(x)[1]

    def elbo(self, x: Tensor, log_q: Tensor) -> Tensor:
        """[B] ELBO(q) = sum_c q(c|x) [log p(x, c) - log q(c|x)] in nats, for any q given as [B, C] logs.

        Equals log p(x) - KL(q || p(z|x)); terms with q = 0 contribute 0 (the limit of q log q)."""
        return _elbo(self.log_joint(x), log_q)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Ancestral sampling: ([n, D] long levels x, [n] long components z)."""
        z = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        probs = self.log_probs.exp()[z].reshape(n * self.dims, self.levels)  # [n*D, K]
        x = torch.multinomial(probs, 1, generator=generator).reshape(n, self.dims)
        return x, z

    def log_prior(self, alpha: float | Tensor, alpha_weights: float) -> Tensor:
        """Scalar log of the Dirichlet priors up to a constant: sum alpha log theta + alpha_weights log pi,
        i.e. Dirichlet(1 + alpha) on every theta[c, d, :] (alpha a number or [D, K]) and
        Dirichlet(1 + alpha_weights) on pi.  MAP EM never decreases ELBO + this."""
        alpha = torch.as_tensor(alpha, dtype=self.log_probs.dtype, device=self.log_probs.device)
        theta = torch.where(alpha > 0, alpha * self.log_probs, torch.zeros_like(self.log_probs)).sum()
        pi = alpha_weights * self.log_weights.sum() if alpha_weights > 0 else 0.0
        return theta + pi


def _bayes(joint: Tensor) -> tuple[Tensor, Tensor]:
    """[B, C] log p(x, z) -> ([B, C] log p(z | x), [B] log p(x)), normalized by logsumexp."""
    log_evidence = torch.logsumexp(joint, dim=1)
    return joint - log_evidence[:, None], log_evidence


def _elbo(joint: Tensor, log_q: Tensor) -> Tensor:
    """[B] sum_c q(c) [log p(x, c) - log q(c)], with 0 log 0 = 0."""
    q = log_q.exp()
    return (q * torch.where(q > 0, joint - log_q, torch.zeros_like(log_q))).sum(1)


def m_step(x: Tensor, log_q: Tensor, levels: int, alpha: float | Tensor = 0.0,
           alpha_weights: float = 0.0, *, onehot: Tensor | None = None) -> LatentClass:
    """The parameters that maximize sum_i ELBO_i(q, params) + log prior, in closed form.

    x: [B, D] long, log_q: [B, C].  alpha (a number or [D, K]) and alpha_weights >= 0: pseudocounts
    added to the counts (0 gives maximum likelihood, where a level never seen in a component gets
    probability 0).  onehot: optional cached one_hot(x, levels) as [B, D * K] in log_q's dtype."""
    if bool((torch.as_tensor(alpha) < 0).any()) or alpha_weights < 0:
        raise ValueError("pseudocounts must be >= 0")
    q = log_q.exp()  # [B, C]
    if onehot is None:
        onehot = torch.nn.functional.one_hot(x, levels).to(q.dtype).reshape(x.shape[0], -1)
    counts = (q.T @ onehot).reshape(q.shape[1], x.shape[1], levels) + alpha  # [C, D, K]
    weights = q.sum(0) + alpha_weights
    if bool((counts.sum(-1) == 0).any()):
        raise ValueError("a component holds no examples and no pseudocounts: its maximum-likelihood "
                         "parameters are undefined; use alpha > 0 or fewer components")
    log_probs = counts.log() - counts.sum(-1, keepdim=True).log()
    log_weights = weights.log() - weights.sum().log()
    return LatentClass(log_weights, log_probs)


def random_responsibilities(n: int, components: int, generator: torch.Generator | None = None,
                            dtype: torch.dtype = torch.float64) -> Tensor:
    """[n, C] log q: each example assigned to one component uniformly at random (hard q), the usual
    way to start EM without a special initial point."""
    z = torch.randint(components, (n,), generator=generator)
    return torch.nn.functional.one_hot(z, components).to(dtype).log()


def marginal_pseudocounts(x: Tensor, levels: int, strength: float) -> Tensor:
    """[D, K] pseudocounts `strength * p_hat(x_d = k)`: a Dirichlet prior that shrinks every component
    toward the pooled per-dimension marginal (empirical Bayes) rather than toward uniform.
    p_hat is add-1/2 smoothed so that no level has prior mass 0.  x: [B, D] long."""
    counts = torch.nn.functional.one_hot(x, levels).sum(0).to(torch.float64) + 0.5
    return strength * counts / counts.sum(-1, keepdim=True)


@dataclass
class EMTrace:
    """One number per EM iteration (nats per example, means over the data):
    elbo_e: ELBO right after the E-step (= mean log p(x), the KL being 0),
    elbo_m: ELBO right after the M-step with q held fixed (one fewer: read at the next E-step),
    objective: elbo_e + log prior / n, the quantity MAP EM never decreases."""

    elbo_e: list[float]
    elbo_m: list[float]
    objective: list[float]


def fit_em(x: Tensor, init: LatentClass | Tensor, levels: int, *, iterations: int = 100,
           tol: float = 1e-6, alpha: float | Tensor = 0.0, alpha_weights: float = 0.0,
           callback=None) -> tuple[LatentClass, EMTrace]:
    """Variational EM from a model or from [B, C] initial log responsibilities.

    Stops after `iterations` or when the objective rises by less than tol nats per example.
    `callback(iteration, model)` is called after every E-step (for validation, progress bars);
    if it returns True, EM stops.  Returns the model after the last M-step and the trace."""
    n = x.shape[0]
    dtype = init.log_probs.dtype if isinstance(init, LatentClass) else init.dtype
    onehot = torch.nn.functional.one_hot(x, levels).to(dtype).reshape(n, -1)
    model = init if isinstance(init, LatentClass) else m_step(x, init, levels, alpha, alpha_weights,
                                                               onehot=onehot)
    trace = EMTrace([], [], [])
    log_q = None
    for it in range(iterations):
        joint = model.log_joint(x)  # [B, C] under the current parameters
        if log_q is not None:  # the previous q under the parameters its M-step chose
            trace.elbo_m.append(_elbo(joint, log_q).mean().item())
        log_q, log_evidence = _bayes(joint)  # E-step: q = exact posterior
        trace.elbo_e.append(log_evidence.mean().item())
        trace.objective.append(trace.elbo_e[-1] + model.log_prior(alpha, alpha_weights).item() / n)
        if callback is not None and callback(it, model):
            break
        if it > 0 and trace.objective[-1] - trace.objective[-2] < tol:
            break
        model = m_step(x, log_q, levels, alpha, alpha_weights, onehot=onehot)  # M-step
    return model, trace
