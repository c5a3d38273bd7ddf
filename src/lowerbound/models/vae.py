"""The variational autoencoder: the ELBO made concrete (Kingma & Welling 2014; Rezende et al. 2014).

    log P(x) >= E_q(z|x)[log P(x|z)] - KL(q(z|x) || p(z))          (ELBO: terms reconstruction, kl)
    log P(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k|x)], z_k ~ q    (IWAE, Burda et al. 2016)

q(z|x) is a diagonal Gaussian from the encoder net, p(z) = N(0, I), and P(x|z) is one of the output
likelihoods of decoders.py.  The KL term is closed form through prob.kl_divergence.  Training
objectives: the ELBO, optionally with beta annealing (Bowman et al. 2016) or free bits (Kingma et al.
2016, IAF paper, eq. 15), or the IWAE bound with k samples; each changes what the training number
means, so `loss(x).estimator` names it (e.g. "elbo(beta=0.5)", "iwae-k=5").  `bound(x)` is always
an honest upper bound on -log P(x): estimator "elbo", or "iwae" with K samples, chunked over K so
memory stays bounded, whose extras hold the K-sample ELBO and the gap ELBO - IWAE (an estimate of
how far q is from the true posterior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Normal

from ..errors import UserError
from ..nets.conv import ConvDecoder, ConvEncoder
from ..nets.mlp import MLP
from ..prob.bound import Bound
from ..prob.kl import kl_divergence
from ..prob.tails import log_mean_exp_variance
from ..prob.units import to_signed
from . import work
from .base import GenerativeModel
from .decoders import make_decoder
from .registry import register


@dataclass
class VAEConfig:
    architecture: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (512, 256)  # MLP widths of the encoder; the decoder mirrors them
    channels: tuple[int, ...] = (32, 64)  # conv stages (each halves the image size)
    conv_hidden: int = 256  # width of the conv nets' fully connected layer
    latent_dim: int = 32
    decoder: Literal["categorical", "discretized-logistic", "bernoulli", "gaussian"] = "categorical"
    mixtures: int = 1  # components of the discretized-logistic decoder
    gaussian_scale: Literal["output", "shared"] = "output"
    objective: Literal["elbo", "iwae"] = "elbo"
    k: int = 1  # samples per example in training (IWAE's k; the ELBO averages k draws)
    beta: float = 1.0  # weight of the KL term in training (1 = the ELBO)
    warmup_steps: int = 0  # beta rises linearly from 0 to `beta` over this many training steps
    free_bits: float = 0.0  # nats per latent dimension below which the KL is not penalized
    dropout: float = 0.3  # digits overfit in seconds: dropout and early stopping decide the bound
    norm: bool = False  # LayerNorm in the MLPs
    eval_samples: int = 1000  # default K of bound(x, estimator="iwae")
    chunk_elements: int = 1 << 24  # memory bound: decoder outputs per IWAE chunk

    def __post_init__(self) -> None:
        checks = [
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.mixtures >= 1, f"mixtures must be >= 1, got {self.mixtures}"),
            (self.k >= 1, f"k must be >= 1, got {self.k}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.free_bits >= 0, f"free_bits must be >= 0, got {self.free_bits}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.eval_samples >= 1, f"eval_samples must be >= 1, got {self.eval_samples}"),
            (self.chunk_elements >= 1, f"chunk_elements must be >= 1, got {self.chunk_elements}"),
            (self.conv_hidden >= 1 and all(c >= 1 for c in self.channels + self.hidden),
             "hidden, channels and conv_hidden must be positive widths"),
            (self.objective == "elbo" or (self.beta == 1 and not self.warmup_steps and not self.free_bits),
             "beta, warmup_steps and free_bits apply to the elbo objective, not to iwae"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"The VAE option {message}.")

    @property
    def objective_name(self) -> str:
        """What loss(x) computes, as a Bound estimator name."""
        if self.objective == "iwae":
            return f"iwae-k={self.k}"
        mods = [f"beta={self.beta:g}"] if self.beta != 1 else []
        mods += [f"warmup={self.warmup_steps}"] if self.warmup_steps else []
        mods += [f"free-bits={self.free_bits:g}"] if self.free_bits else []
        mods += [f"k={self.k}"] if self.k > 1 else []
        return "elbo" + (f"({','.join(mods)})" if mods else "")


class VAE(GenerativeModel):
    """A VAE over data of `shape` with `levels` (None: continuous data, gaussian decoder only)."""

    family = "vae"
    estimators = ("elbo", "iwae")
    tight_estimator = ("iwae", 1000)  # Burda et al. 2016: tighter as k grows

    def __init__(self, config: VAEConfig, levels: int | None, shape: tuple[int, ...]):
        super().__init__(levels=levels, shape=shape, config=config)
        c = config
        self.likelihood = make_decoder(c.decoder, levels, self.shape, **_decoder_options(c))
        p, d, latent = self.likelihood.num_params, self.dims, c.latent_dim
        if c.architecture == "mlp":
            self.encoder = MLP(d, 2 * latent, c.hidden, dropout=c.dropout, norm=c.norm)
            self.decoder = MLP(latent, p * d, tuple(reversed(c.hidden)), dropout=c.dropout, norm=c.norm)
        else:
            if len(self.shape) != 3:
                raise UserError(f"The conv architecture needs images [C, H, W], got shape {self.shape}.")
            ch, h, w = self.shape
            self.encoder = ConvEncoder(ch, (h, w), 2 * latent, c.channels, c.conv_hidden, c.dropout)
            self.decoder = ConvDecoder(latent, p * ch, (h, w), c.channels, c.conv_hidden, c.dropout)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training steps, for warmup

    # ------------------------------------------------------------ the two halves
    def posterior(self, x: Tensor) -> Normal:
        """q(z|x): a Normal with loc and scale [B, L]."""
        dtype = next(self.parameters()).dtype
        inp = to_signed(x, self.levels).to(dtype) if self.levels is not None else x.to(dtype)
        if self.config.architecture == "mlp":
            inp = inp.reshape(inp.shape[0], -1)
        mean, log_scale = self.encoder(inp).chunk(2, dim=-1)
        return Normal(mean, log_scale.clamp(-12.0, 6.0).exp(), validate_args=False)

    def prior(self, like: Tensor) -> Normal:
        return Normal(torch.zeros_like(like), torch.ones_like(like), validate_args=False)

    def decode(self, z: Tensor) -> Tensor:
        """z [N, L] -> the likelihood's parameters [N, P, *shape]."""
        return self.decoder(z).view(z.shape[0], self.likelihood.num_params, *self.shape)

    def _draw(self, q: Normal, n: int, generator: torch.Generator | None) -> Tensor:
        """n reparameterized draws of q: [n, B, L]."""
        eps = torch.randn((n, *q.loc.shape), generator=generator, device=q.loc.device, dtype=q.loc.dtype)
        return q.loc + q.scale * eps

    def _log_px(self, x: Tensor, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """log P(x | z) for z [S, B, L] -> [S, B] nats."""
        s, b = z.shape[:2]
        xs = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        return self.likelihood.log_prob(xs, self.decode(z.reshape(s * b, -1)), generator).view(s, b)

    def _log_weights(self, x: Tensor, q: Normal, n: int, generator: torch.Generator | None) -> Tensor:
        """log p(x, z_k) - log q(z_k|x) for n draws z_k ~ q: [n, B] nats."""
        z = self._draw(q, n, generator)
        log_prior = self.prior(z).log_prob(z).sum(-1)
        return self._log_px(x, z, generator) + log_prior - q.log_prob(z).sum(-1)

    def kl_per_dim(self, q: Normal) -> Tensor:
        """KL(q(z_j|x) || p(z_j)) per example and latent dimension: [B, L] nats (closed form)."""
        return kl_divergence(q, self.prior(q.loc)).value

    # ------------------------------------------------------------ the contract
    def beta_now(self) -> float:
        c = self.config
        if not c.warmup_steps:
            return c.beta
        return c.beta * min(1.0, float(self.steps) / c.warmup_steps)

    def loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> Bound:
        """The training objective per example, named by config.objective_name."""
        c = self.config
        if self.training and torch.is_grad_enabled():
            self.steps += 1
        q = self.posterior(x)
        if c.objective == "iwae":
            log_w = self._log_weights(x, q, c.k, generator)
            nll = math.log(c.k) - torch.logsumexp(log_w, 0)
            return Bound({"nll": nll}, c.objective_name, dims=self.dims)
        reconstruction = -self._log_px(x, self._draw(q, c.k, generator), generator).mean(0)
        kl = self.kl_per_dim(q)
        if c.free_bits:
            # Kingma et al. 2016: sum_j max(lambda, E_batch KL_j); below lambda a dimension is free
            under = kl.mean(0, keepdim=True) < c.free_bits
            kl = torch.where(under, torch.full_like(kl, c.free_bits), kl)
        terms = {"reconstruction": reconstruction, "kl": self.beta_now() * kl.sum(1)}
        return Bound(terms, c.objective_name, dims=self.dims)

    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None) -> Bound:
        """Upper bound on -log P(x) per example [B] nats.

        "elbo": terms reconstruction (-E_q log P(x|z), averaged over `samples` draws, default 1;
        variance = that average's variance when samples >= 2) and kl (closed form).
        "iwae": term nll = -log (1/K) sum_k w_k with K = `samples` (default config.eval_samples),
        named "iwae-k=K"; extras elbo (the K-draw ELBO's bound, nats) and gap = elbo - nll >= 0;
        variance = the jackknife variance of the log of the mean weight from the K log-weights
        (prob.tails.log_mean_exp_variance), which a coverage test checks against repeated draws.
        """
        estimator = self.resolve_estimator(estimator, samples)
        n = samples if samples is not None else (self.config.eval_samples if estimator == "iwae" else 1)
        if estimator == "iwae":
            return self._iwae_bound(x, n, generator)
        q = self.posterior(x)
        log_px = self._log_px(x, self._draw(q, n, generator), generator)
        variance = log_px.var(0) / n if n > 1 else None
        terms = {"reconstruction": -log_px.mean(0), "kl": self.kl_per_dim(q).sum(1)}
        return Bound(terms, "elbo", dims=self.dims, variance=variance)

    def _iwae_bound(self, x: Tensor, k: int, generator: torch.Generator | None) -> Bound:
        """The K-sample importance-weighted bound, accumulated over chunks of draws."""
        q = self.posterior(x)
        per_draw = max(1, x.shape[0] * self.dims * self.likelihood.num_params)
        chunk = max(1, self.config.chunk_elements // per_draw)
        work.plan(k)
        parts = []
        for start in range(0, k, chunk):
            parts.append(self._log_weights(x, q, min(chunk, k - start), generator))
            work.advance(parts[-1].shape[0])  # draws done, for the progress bar (models/work.py)
        log_w = torch.cat(parts)  # [K, B]: K log-weights per example, small beside the decoder's outputs
        nll = math.log(k) - torch.logsumexp(log_w, 0)
        neg_elbo = -log_w.mean(0)
        variance = log_mean_exp_variance(log_w).to(nll.dtype) if k > 1 else None
        return Bound({"nll": nll}, f"iwae-k={k}", dims=self.dims, variance=variance,
                     extras={"elbo": neg_elbo, "gap": neg_elbo - nll})

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of x ~ sum_z p(z) P(x|z), in the data layout [n, *shape]."""
        p = next(self.parameters())
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=p.device, dtype=p.dtype)
        return self.likelihood.sample(self.decode(z), generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The most likely x given z = the posterior mean (or one draw of q when a generator is given)."""
        q = self.posterior(x)
        z = q.loc if generator is None else self._draw(q, 1, generator)[0]
        return self.likelihood.mode(self.decode(z))

    @torch.no_grad()
    def diagnostics(self, x: Tensor) -> dict:
        """Posterior collapse made visible: the mean KL per latent dimension (nats) over x, and the
        active units of Burda et al. 2016 (dimensions whose posterior mean varies with x: Var > 0.01)."""
        q = self.posterior(x)
        kl = self.kl_per_dim(q).mean(0)
        spread = q.loc.var(0) if x.shape[0] > 1 else torch.zeros_like(kl)
        return {"kl_per_dim": [round(float(v), 6) for v in kl],
                "posterior_mean_variance": [round(float(v), 6) for v in spread],
                "active_units": int((spread > 0.01).sum()),
                "latent_dim": self.config.latent_dim,
                "objective": self.config.objective_name,
                "beta": self.beta_now()}


def _decoder_options(c: VAEConfig) -> dict:
    if c.decoder == "discretized-logistic":
        return {"mixtures": c.mixtures}
    if c.decoder == "gaussian":
        return {"scale": c.gaussian_scale}
    return {}


@register("vae", VAEConfig, "variational autoencoder: ELBO / IWAE, categorical, logistic, bernoulli or "
          "gaussian decoder")
def build(config: VAEConfig, levels: int | None, shape: tuple[int, ...]) -> VAE:
    return VAE(config, levels, shape)
