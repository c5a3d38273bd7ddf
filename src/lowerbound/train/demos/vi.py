"""`lowerbound demo vi`: variational inference you can watch.  A diagonal Gaussian q(z) is fitted to the
exact posterior p(z | x) of a random linear Gaussian model by maximizing the ELBO with Adam (learning
rate decayed by a cosine), using reparameterized Monte Carlo gradients (Kingma & Welling 2014,
"Auto-Encoding Variational Bayes").

Because the model's evidence is exact, the identity log p(x) = ELBO(q) + KL(q || p(z | x)) is visible
as it happens: the ELBO rises toward log p(x) and the gap, the KL to the true posterior (closed form),
closes.  It cannot close to 0: the posterior has a full covariance and q is diagonal, so the gap stops
at the mean-field floor KL(q* || p) = (sum_i log L_ii - log det L) / 2, L the posterior precision,
reached at q* = N(posterior mean, diag(1 / L_ii)) (Bishop, PRML, sec. 10.1.2).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.distributions as D
from tqdm import tqdm

from ...errors import UserError
from ...io.curves import plot_curves
from ...prob import LinearGaussian, elbo, kl_divergence
from .registry import add_option, check_config, register


@dataclass
class VIDemoConfig:
    """steps of Adam at learning rate lr, `samples` Monte Carlo draws of q per step; the model has
    latent_dim d, data_dim D and noise_std s; seed fixes the model, x and every draw."""

    steps: int = 500
    seed: int = 0
    latent_dim: int = 2
    data_dim: int = 5
    samples: int = 8
    lr: float = 0.05
    noise_std: float = 0.5

    def __post_init__(self) -> None:
        check_config(self, integers=("steps", "latent_dim", "data_dim", "samples"),
                     positive=("lr", "noise_std"))
        if self.samples < 2:
            raise UserError(f"samples must be at least 2 to give the ELBO a standard error, "
                            f"got {self.samples}.")


def mean_field_floor(posterior: D.MultivariateNormal) -> float:
    """The smallest KL(q || posterior) over diagonal Gaussians q, in nats (see the module docstring)."""
    d = posterior.event_shape[0]
    precision = posterior.precision_matrix.reshape(-1, d, d)[0]  # the first (here: only) example
    return 0.5 * (torch.log(torch.diagonal(precision)).sum() - torch.logdet(precision)).item()


def _options(parser) -> None:
    add_option(parser, VIDemoConfig, "steps", "Adam steps")
    add_option(parser, VIDemoConfig, "latent_dim", "latent dimension d")
    add_option(parser, VIDemoConfig, "data_dim", "data dimension D")
    add_option(parser, VIDemoConfig, "samples", "Monte Carlo draws of q per step")
    add_option(parser, VIDemoConfig, "lr", "Adam learning rate")


@register("vi", VIDemoConfig, "maximize the ELBO of a Gaussian q: the gap KL(q || exact posterior) closes",
          options=_options)
def run_vi_demo(
    cfg: VIDemoConfig,
    plot: str | Path | None = None,
    *,
    progress: bool = True,
    out: TextIO | None = None,
) -> dict:
    """Fit q, print a table of (step, ELBO +- stderr, log p(x), gap) about ten times, draw the three curves.

    Returns {"step", "elbo", "elbo_stderr", "gap": lists per step (gap of q before the step's update);
    "log_evidence", "floor", "final_gap": floats; "plot": the PNG path or None}.  All in nats.
    """
    out = sys.stdout if out is None else out
    if plot is not None and Path(plot).suffix.lower() != ".png":  # refuse before the work, not after
        raise UserError(f"the plot path must end in .png, got {str(plot)!r}.")
    g = torch.Generator().manual_seed(cfg.seed)
    model = LinearGaussian.random(cfg.latent_dim, cfg.data_dim, noise_std=cfg.noise_std, generator=g)
    _, x = model.sample(1, generator=g)
    log_px = model.log_evidence(x).item()
    posterior = model.posterior(x)
    floor = mean_field_floor(posterior)

    # q starts at the prior N(0, I): the gap is then KL(prior || posterior)
    loc = torch.zeros(1, cfg.latent_dim, dtype=torch.float64, requires_grad=True)
    log_scale = torch.zeros(1, cfg.latent_dim, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([loc, log_scale], lr=cfg.lr)
    # cosine decay to lr / 100: Monte Carlo gradient noise would otherwise keep q jittering near the floor
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr / 100)
    hist: dict = {"step": [], "elbo": [], "elbo_stderr": [], "gap": []}
    every = max(1, cfg.steps // 10)

    print(f"linear Gaussian model: latent dim {cfg.latent_dim}, data dim {cfg.data_dim}, "
          f"noise std {cfg.noise_std}; exact log p(x) = {log_px:.4f} nats", file=out)
    print(f"smallest gap any diagonal q can reach (mean-field floor): {floor:.4f} nats", file=out)
    print(f"{'step':>6}  {'ELBO (MC, ' + str(cfg.samples) + ' draws)':>24}  {'log p(x)':>10}  "
          f"{'gap = KL(q||p(z|x))':>20}", file=out)
    bar = tqdm(range(1, cfg.steps + 1), desc="vi demo", file=sys.stderr, disable=not progress, leave=False)
    for step in bar:
        q = D.Independent(D.Normal(loc, log_scale.exp()), 1)
        est = elbo(lambda z: model.log_joint(x, z), q, num_samples=cfg.samples, generator=g)
        opt.zero_grad(set_to_none=True)
        (-est.value.sum()).backward()
        opt.step()
        schedule.step()
        gap = kl_divergence(q, posterior).value.item()  # q before this step, as est was
        hist["step"].append(step)
        hist["elbo"].append(est.value.item())
        hist["elbo_stderr"].append(est.stderr.item())
        hist["gap"].append(gap)
        if step % every == 0 or step == 1:
            bar.set_postfix(elbo=f"{est.value.item():.3f}", gap=f"{gap:.4f}")
            row = f"{est.value.item():.4f} +- {est.stderr.item():.4f}"
            tqdm.write(f"{step:>6}  {row:>24}  {log_px:>10.4f}  {gap:>20.4f}", file=out)
    bar.close()
    with torch.no_grad():
        final_gap = kl_divergence(D.Independent(D.Normal(loc, log_scale.exp()), 1), posterior).value.item()
    print(f"final gap {final_gap:.4f} nats (floor {floor:.4f}); "
          f"log p(x) - gap = {log_px - final_gap:.4f} nats, the exact ELBO of the final q", file=out)

    hist.update(log_evidence=log_px, floor=floor, final_gap=final_gap, plot=None)
    if plot is not None:
        series = {
            f"ELBO (Monte Carlo, {cfg.samples} draws)": hist["elbo"],
            "log p(x) (exact)": [log_px] * len(hist["step"]),
            "gap = KL(q || p(z|x)) (closed form)": hist["gap"],
        }
        hist["plot"] = plot_curves(plot, hist["step"], series, xlabel="Adam step", ylabel="nats",
                                   title="ELBO + KL(q || posterior) = log p(x)")
        print(f"wrote {hist['plot']}", file=out)
    return hist
