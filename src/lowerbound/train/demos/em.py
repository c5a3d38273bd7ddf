"""`lowerbound demo em`: EM is coordinate ascent on the ELBO (Neal & Hinton 1998, "A view of the EM algorithm
that justifies incremental, sparse, and other variants"; Dempster, Laird & Rubin 1977), watched step by step.

The model is the latent-class model of prob/latent_class.py, a mixture of C products of categoricals, on
the built-in 8x8 digits (17 levels per pixel).  For any q(z | x) and parameters theta,

    log p(x; theta) = ELBO(q, theta) + KL(q(z | x) || p(z | x; theta))

    E-step: q <- p(z | x; theta), exact by Bayes rule over C components: the KL, i.e. the gap
            log p(x) - ELBO, becomes 0, so the ELBO rises to log p(x; theta)
    M-step: theta <- argmax ELBO(q, theta), in closed form (weighted counts): the ELBO rises again, and
            log p(x) rises at least as much, so a new gap KL(q || p(z | x; theta_new)) opens

Maximum likelihood, no prior: the ELBO itself never decreases.  The gap is computed twice, as
log p(x) - ELBO (from the joint) and as KL(q || p(z | x)) by its definition (from the posterior), and
the two agree to rounding.  All numbers are means over the training images, in nats
per image (bits/dim = nats / (64 log 2)), exact (no sampling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from ...data import load
from ...errors import UserError
from ...io.panels import Kind, Panel, Series, plot_panels
from ...prob import LatentClass, fit_em
from ...prob.latent_class import random_responsibilities
from .registry import add_option, begin, check_config, register, write_plot


@dataclass
class EMDemoConfig:
    """C `components`, `iterations` of EM from random hard responsibilities, on the first `examples`
    training images of digits (at most 1437)."""

    components: int = 10
    iterations: int = 25
    examples: int = 1437
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, integers=("components", "iterations", "examples"))
        if self.components > self.examples:
            raise UserError(f"components ({self.components}) must not exceed examples ({self.examples}).")


def _point(kind: str, model: LatentClass, x: torch.Tensor, log_q: torch.Tensor) -> dict:
    """ELBO(q, theta), log p(x; theta) and the gap two ways, means over x [B, D] in nats."""
    log_post, log_px = model.posterior(x)
    elbo = model.elbo(x, log_q)
    # KL by its definition, in log space (torch's categorical KL turns posteriors below e^-745 into 0 and
    # the KL into inf); terms with q = 0 contribute 0
    q = log_q.exp()
    kl = (q * torch.where(q > 0, log_q - log_post, torch.zeros_like(log_q))).sum(1)
    return {"kind": kind, "elbo": elbo.mean().item(), "log_evidence": log_px.mean().item(),
            "gap": (log_px - elbo).mean().item(), "kl_to_posterior": kl.mean().item()}


def _trajectory(cfg: EMDemoConfig, x: torch.Tensor) -> list[dict]:
    """Run EM (prob.fit_em) keeping every theta, then read off the ELBO after each half-step."""
    g = torch.Generator().manual_seed(cfg.seed)
    q0 = random_responsibilities(x.shape[0], cfg.components, generator=g)
    thetas: list[LatentClass] = []
    final, _ = fit_em(x, q0, 17, iterations=cfg.iterations, tol=-math.inf,
                      callback=lambda it, model: thetas.append(model))
    thetas.append(final)
    points = [_point("start", thetas[0], x, q0)]  # theta_0 is the M-step of the random q0
    for before, after in zip(thetas, thetas[1:]):
        log_q = before.posterior(x)[0]  # the E-step
        points.append(_point("E", before, x, log_q))
        points.append(_point("M", after, x, log_q))
    return points


def _explain(res: dict, cfg: EMDemoConfig, out: TextIO) -> None:
    print(f"latent-class model, {cfg.components} components, on {res['examples']} digits (64 pixels, 17 "
          f"levels); EM from random hard assignments; nats per image, exact", file=out)
    heads = ("ELBO", "log p(x)", "gap = log p(x) - ELBO", "KL(q || p(z|x))")
    print(f"{'step':>6}  {heads[0]:>12}  {heads[1]:>12}  {heads[2]:>22}  {heads[3]:>16}", file=out)
    points = res["steps"]
    shown = set(range(7)) | set(range(len(points) - 4, len(points)))
    for k, pt in enumerate(points):
        if k in shown:
            label = pt["kind"] if pt["kind"] == "start" else f"{pt['kind']}{(k + 1) // 2}"
            print(f"{label:>6}  {pt['elbo']:>12.5f}  {pt['log_evidence']:>12.5f}  {pt['gap']:>22.3e}  "
                  f"{pt['kl_to_posterior']:>16.3e}", file=out)
        elif k == 7:
            print(f"{'...':>6}", file=out)
    print(f"the ELBO rose at every one of {len(points) - 1} half-steps (smallest rise "
          f"{res['smallest_rise']:.2e} nats); largest |gap| after an E-step "
          f"{res['largest_gap_after_e']:.1e}", file=out)
    print(f"final log p(x) = {res['log_evidence_final']:.4f} nats per image = "
          f"{res['bits_per_dim_final']:.4f} "
          "bits/dim on the training images", file=out)


def _options(parser) -> None:
    add_option(parser, EMDemoConfig, "components", "mixture components C")
    add_option(parser, EMDemoConfig, "iterations", "EM iterations (one E- and one M-step each)")
    add_option(parser, EMDemoConfig, "examples", "training images used, at most 1437")


@register("em", EMDemoConfig, "variational EM on digits: the ELBO rises every E- and M-step, the gap is 0 "
          "after each E-step", options=_options)
def run_em_demo(cfg: EMDemoConfig, plot: str | Path | None = None, *, progress: bool = True,
                out: TextIO | None = None) -> dict:
    """{"steps": [{"kind": "start"/"E"/"M", "elbo", "log_evidence", "gap", "kl_to_posterior"}],
    "gap_after_e", "gap_after_m", "smallest_rise", "largest_gap_after_e", "log_evidence_final",
    "bits_per_dim_final", "examples", "plot"}.  Nats per image."""
    out = begin(plot, out)
    train = load("digits").train
    if cfg.examples > train.shape[0]:
        raise UserError(f"examples must be at most {train.shape[0]}, the training images of digits.")
    x = train[: cfg.examples].reshape(cfg.examples, -1)
    points = _trajectory(cfg, x)
    elbos = [p["elbo"] for p in points]
    res = {"steps": points, "examples": cfg.examples,
           "gap_after_e": [p["gap"] for p in points if p["kind"] == "E"],
           "gap_after_m": [p["gap"] for p in points if p["kind"] == "M"],
           "smallest_rise": min(b - a for a, b in zip(elbos, elbos[1:])),
           "log_evidence_final": points[-1]["log_evidence"],
           "bits_per_dim_final": -points[-1]["log_evidence"] / (x.shape[1] * math.log(2))}
    res["largest_gap_after_e"] = max(abs(v) for v in res["gap_after_e"])
    _explain(res, cfg, out)
    res["plot"] = write_plot(plot, lambda path: _plot(path, res, cfg), out)
    return res


def _plot(path, res: dict, cfg: EMDemoConfig) -> Path:
    pts = res["steps"]
    k = list(range(len(pts)))
    e_idx = [i for i, p in enumerate(pts) if p["kind"] == "E"]
    m_idx = [i for i, p in enumerate(pts) if p["kind"] == "M"]
    first = min(len(pts), 13)  # the first six iterations, where the steps are large enough to see
    early_e = [i for i in e_idx if i < first]
    stairs = Panel(f"first {(first - 1) // 2} iterations: the ELBO climbs, log p(x) leads",
                   "half-step (E, M, E, M, ...)", "nats per image", [
                       Series("log p(x; theta)", k[:first], [p["log_evidence"] for p in pts[:first]],
                              Kind.STEPS),
                       Series("ELBO(q, theta)", k[:first], [p["elbo"] for p in pts[:first]]),
                       Series("after an E-step: ELBO = log p(x)", early_e, [pts[i]["elbo"] for i in early_e],
                              Kind.POINTS),
                   ])
    whole = Panel(f"all {cfg.iterations} iterations", "half-step", "nats per image", [
        Series("log p(x; theta)", k, [p["log_evidence"] for p in pts], Kind.STEPS),
        Series("ELBO(q, theta)", k, [p["elbo"] for p in pts]),
    ])
    gap = Panel("gap log p(x) - ELBO = KL(q || posterior)", "half-step", "nats per image", [
        Series("after an M-step: a new gap opens", m_idx, [pts[i]["gap"] for i in m_idx], Kind.POINTS),
        Series("after an E-step: 0 (q is the exact posterior)", e_idx, [pts[i]["gap"] for i in e_idx],
               Kind.POINTS),
    ])
    rises = [(i, pts[i]["elbo"] - pts[i - 1]["elbo"]) for i in k[1:]]
    flat = sum(r <= 0 for _, r in rises)  # a log axis cannot show them: say how many instead

    def by(kind_idx: list[int]) -> tuple[list[int], list[float]]:
        kept = [(i, r) for i, r in rises if i in kind_idx and r > 0]
        return [i for i, _ in kept], [r for _, r in kept]

    rise = Panel("every half-step raises the ELBO (log scale: all > 0)", "half-step",
                 "rise of the ELBO (nats)", logy=True,
                 series=[Series("by an E-step", *by(e_idx), Kind.POINTS),
                         Series("by an M-step", *by(m_idx), Kind.POINTS)],
                 notes=[f"{flat} rises <= 0 not drawn"] if flat else [])
    return plot_panels(path, [stairs, whole, gap, rise], title=f"EM on digits, {cfg.components} components: "
                       "coordinate ascent on the ELBO")
