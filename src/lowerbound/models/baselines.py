"""Classical baselines every deep family must beat (benchmarks.md, digits-bpd ladder).

    uniform               P(x) = K^-D                                   exact
    categorical           independent per dimension, Laplace-smoothed    exact
    categorical-mixture   the latent-class model (prob/latent_class.py), MAP EM, restarts and prior
                          strength chosen on a validation split held out of train   exact (ELBO = log p)
    gaussian              full covariance on the [-1, 1] scale; for discrete data the dequantization
                          bound  -log P(x) <= -E_u log N(y + u) - D log w  (Theis et al. 2016,
                          "A note on the evaluation of generative models"; Uria et al. 2013, RNADE)
    gaussian-mixture      scikit-learn's GaussianMixture (full covariances), same accounting

All are fitted in closed form or by EM (`fit_mode = "fit"`); every parameter lives in a buffer, so
`state_dict()` round-trips.  Bounds are per example, in nats, split into named terms.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import UserError
from ..prob import latent_class as lc
from ..prob.bound import Bound
from ..prob.units import LN2
from .base import GenerativeModel
from .registry import register


@contextmanager
def _threads(n: int):
    """Run with n torch and BLAS/OpenMP threads (0: as they are), restored afterwards.  EM and
    scikit-learn's mixtures at these sizes are fastest on one thread: measured 6-8x faster than two
    on a loaded 2-core machine, where extra threads only contend."""
    if n <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


class _Baseline(GenerativeModel):
    """Shared input checks, estimator names and the fit() bookkeeping of the classical models."""

    fit_mode = "fit"
    needs_levels = True

    def __init__(self, config, levels: int | None, shape: tuple[int, ...]):
        if self.needs_levels and levels is None:
            raise UserError(f"The {self.family} model needs discrete data (integer levels); "
                            "this data set is continuous.")
        super().__init__(levels=levels, shape=shape, config=config)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def _flat(self, x: Tensor) -> Tensor:
        """[B, *shape] -> [B, D], checked: long levels 0..K-1 for discrete data, finite floats otherwise."""
        if tuple(x.shape[1:]) != self.shape:
            raise UserError(f"The {self.family} model was built for examples of shape {self.shape}, "
                            f"got {tuple(x.shape[1:])}.")
        x = x.reshape(x.shape[0], -1)
        if self.levels is None:
            x = x.to(torch.get_default_dtype()) if not x.is_floating_point() else x
            if not bool(torch.isfinite(x).all()):
                raise UserError(f"The {self.family} model was given non-finite values.")
            return x
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise UserError(f"The {self.family} model expects integer levels 0..{self.levels - 1}, "
                            f"got a {x.dtype} tensor.")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.levels):
            raise UserError(f"The {self.family} model expects levels 0..{self.levels - 1}, got values "
                            f"from {int(x.min())} to {int(x.max())}.")
        return x.long()

    def _estimator(self, estimator: str | None) -> str:
        if estimator is None:
            return self.estimators[0]
        if estimator not in self.estimators:
            raise UserError(f"The {self.family} model has no estimator {estimator!r}; "
                            f"choose one of: {', '.join(self.estimators)}.")
        return estimator

    def _require_fitted(self) -> None:
        if not bool(self.fitted):
            raise UserError(f"The {self.family} model has not been fitted; call fit(train) first.")

    def _per_dim(self, x: Tensor) -> float:
        """Mean bound of x in bits/dim (nats per example for continuous data), for diagnostics."""
        g = torch.Generator(self.device).manual_seed(0)
        nats = self.bound(x.to(self.device), generator=g).nats.mean().item()
        return nats if self.levels is None else nats / (self.dims * LN2)

    def fit(self, train: Tensor, valid: Tensor | None = None, *, progress: bool = True) -> dict:
        """Fit on train (valid, where given, only chooses settings and is reported); returns
        diagnostics: train/valid bound (bits/dim, or nats for continuous data), seconds, and more.
        Fitting runs on the CPU (small closed-form/EM problems); the buffers keep their device."""
        start = time.perf_counter()
        tr = self._flat(train).cpu()
        va = None if valid is None or len(valid) == 0 else self._flat(valid).cpu()
        if len(tr) == 0:
            raise UserError(f"The {self.family} model cannot be fitted to an empty training set.")
        with torch.no_grad(), _threads(getattr(self.config, "threads", 0)):
            info = self._fit(tr, va, progress) or {}
            self.fitted.fill_(True)
            unit = "nats" if self.levels is None else "bits_per_dim"
            info[f"train_{unit}"] = self._per_dim(train)
            if va is not None:
                info[f"valid_{unit}"] = self._per_dim(valid)
        info["seconds"] = time.perf_counter() - start
        return info

    def _fit(self, train: Tensor, valid: Tensor | None, progress: bool) -> dict | None:
        raise NotImplementedError


def _exact(nats: dict[str, Tensor], dims: int) -> Bound:
    return Bound(nats, "exact", True, dims)


# ---------------------------------------------------------------- uniform
@dataclass
class UniformConfig:
    """Nothing to configure: P(x) = K^-D."""


class Uniform(_Baseline):
    family = "uniform"
    estimators = ("exact",)

    def _fit(self, train, valid, progress):
        return {}

    def bound(self, x, *, estimator=None, samples=None, generator=None) -> Bound:
        """[B] nats: D log K for every example (exact)."""
        self._estimator(estimator)
        x = self._flat(x)
        nll = torch.full((x.shape[0],), self.dims * math.log(self.levels), device=x.device)
        return _exact({"nll": nll}, self.dims)

    def sample(self, n, generator=None) -> Tensor:
        return torch.randint(self.levels, (n, *self.shape), generator=generator)


# ---------------------------------------------------------------- categorical
@dataclass
class CategoricalConfig:
    """smoothing: pseudocount added to every count (1 = Laplace's rule of succession)."""

    smoothing: float = 1.0

    def __post_init__(self):
        if not self.smoothing > 0:
            raise ValueError("smoothing must be > 0, or an unseen level would cost infinitely many bits")


class Categorical(_Baseline):
    family = "categorical"
    estimators = ("exact",)

    def __init__(self, config, levels, shape):
        super().__init__(config, levels, shape)
        self.register_buffer("log_probs", torch.full((self.dims, levels), -math.log(levels)))

    def _fit(self, train, valid, progress):
        counts = torch.nn.functional.one_hot(train, self.levels).sum(0).double() + self.config.smoothing
        self.log_probs.copy_(counts.log() - counts.sum(-1, keepdim=True).log())

    def bound(self, x, *, estimator=None, samples=None, generator=None) -> Bound:
        """[B] nats: -sum_d log p_d(x_d) (exact)."""
        self._estimator(estimator)
        self._require_fitted()
        x = self._flat(x)
        nll = -self.log_probs[torch.arange(self.dims, device=x.device), x].sum(1)
        return _exact({"nll": nll}, self.dims)

    def sample(self, n, generator=None) -> Tensor:
        probs = self.log_probs.exp().repeat(n, 1)  # [n * D, K]
        return torch.multinomial(probs, 1, generator=generator).reshape(n, *self.shape)


# ---------------------------------------------------------------- categorical mixture
@dataclass
class CategoricalMixtureConfig:
    """components: C.  prior: Dirichlet on each component's per-dimension categorical, "marginal"
    (pseudocounts strength * pooled marginal of x_d) or "uniform" (strength / K per level).
    strengths: candidate prior strengths; restarts: random starts per strength; the pair with the
    best validation likelihood wins (valid_fraction of train is held out when fit() gets no
    valid); refit: then continue EM from it on train + valid (a valid bound measured afterwards
    is then no longer held out: fit() says so with "refit_on_valid").  alpha_weights: pseudocount on pi.
    tol: nats per example.  threads: torch threads while fitting (0: as they are)."""

    components: int = 20
    prior: Literal["marginal", "uniform"] = "marginal"
    strengths: tuple[float, ...] = (8.0, 16.0, 32.0)
    restarts: int = 3
    alpha_weights: float = 1.0
    iterations: int = 300
    tol: float = 1e-4
    valid_fraction: float = 0.1
    refit: bool = True
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if self.components < 1 or self.restarts < 1 or self.iterations < 1:
            raise ValueError("components, restarts and iterations must be >= 1")
        if not self.strengths or min(self.strengths) <= 0 or self.alpha_weights < 0:
            raise ValueError("strengths must be a non-empty list of numbers > 0, alpha_weights >= 0")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError("valid_fraction must be between 0 and 1")


class CategoricalMixture(_Baseline):
    family = "categorical-mixture"
    estimators = ("exact",)

    def __init__(self, config, levels, shape):
        super().__init__(config, levels, shape)
        c = config.components
        self.register_buffer("log_weights", torch.full((c,), -math.log(c)))
        self.register_buffer("log_probs", torch.full((c, self.dims, levels), -math.log(levels)))

    def latent_class(self) -> lc.LatentClass:
        """The fitted model as pure probability (prob/latent_class.py)."""
        return lc.LatentClass(self.log_weights, self.log_probs)

    def _alpha(self, x: Tensor, strength: float) -> Tensor | float:
        if self.config.prior == "marginal":
            return lc.marginal_pseudocounts(x, self.levels, strength)
        return strength / self.levels

    def _em(self, x, init, strength):
        cfg = self.config
        return lc.fit_em(x, init, self.levels, iterations=cfg.iterations, tol=cfg.tol,
                         alpha=self._alpha(x, strength), alpha_weights=cfg.alpha_weights)

    def _fit(self, train, valid, progress):
        from tqdm.auto import tqdm

        cfg = self.config
        if valid is None:  # hold a validation split out of train; never choose by test
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))
            n_valid = max(1, int(round(cfg.valid_fraction * len(train))))
            train, valid = train[perm[n_valid:]], train[perm[:n_valid]]
        trials = [(s, r) for s in cfg.strengths for r in range(cfg.restarts)]
        bar = tqdm(total=len(trials) + cfg.refit, desc=f"EM, {cfg.components} components",
                   disable=not progress, leave=False)
        best, scores = None, {}
        for strength, restart in trials:
            g = torch.Generator().manual_seed(cfg.seed * 1000 + restart)
            init = lc.random_responsibilities(len(train), cfg.components, g)
            model, trace = self._em(train, init, strength)
            score = model.log_prob(valid).mean().item()  # nats per example, held out
            scores[f"strength={strength:g},restart={restart}"] = -score / (self.dims * LN2)
            if best is None or score > best[0]:
                best = (score, strength, restart, model, len(trace.elbo_e))
            bar.update()
        _, strength, restart, model, iterations = best
        if cfg.refit:
            model, trace = self._em(torch.cat([train, valid]), model, strength)
            iterations = len(trace.elbo_e)
            bar.update()
        bar.close()
        self.log_weights.copy_(model.log_weights)
        self.log_probs.copy_(model.log_probs)
        return {"strength": strength, "restart": restart, "iterations": iterations,
                "refit_on_valid": cfg.refit, "selection_valid_bits_per_dim": scores}

    def bound(self, x, *, estimator=None, samples=None, generator=None) -> Bound:
        """[B] nats, the ELBO with q(z|x) the exact posterior, which equals -log p(x):
        reconstruction = -E_q log p(x|z), kl = KL(q(z|x) || p(z))."""
        self._estimator(estimator)
        self._require_fitted()
        x = self._flat(x)
        model = self.latent_class()
        log_q, _ = model.posterior(x)
        q = log_q.exp()
        reconstruction = -(q * model.log_likelihood(x)).sum(1)
        kl = (q * torch.where(q > 0, log_q - model.log_weights, torch.zeros_like(q))).sum(1)
        return _exact({"reconstruction": reconstruction, "kl": kl}, self.dims)

    def sample(self, n, generator=None) -> Tensor:
        return self.latent_class().sample(n, generator)[0].reshape(n, *self.shape)


@register("uniform", UniformConfig, "uniform over the K levels of every dimension (exact)")
def _build_uniform(config, levels, shape):
    return Uniform(config, levels, shape)


@register("categorical", CategoricalConfig, "independent categorical per dimension, smoothed (exact)")
def _build_categorical(config, levels, shape):
    return Categorical(config, levels, shape)


@register("categorical-mixture", CategoricalMixtureConfig,
          "mixture of products of categoricals (latent-class model) fitted by MAP EM (exact)")
def _build_categorical_mixture(config, levels, shape):
    return CategoricalMixture(config, levels, shape)


from . import baselines_gaussian as _gaussians  # noqa: E402,F401  (registers gaussian, gaussian-mixture)
