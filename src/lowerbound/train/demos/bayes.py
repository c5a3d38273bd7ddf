"""`lowerbound demo bayes`: prior, likelihood, evidence and posterior, named and computed.

    posterior = prior x likelihood / evidence,   p(h | x) = p(h) p(x | h) / sum_h' p(h') p(x | h')

First the diagnostic test (Gigerenzer & Hoffrage 1995, "How to improve Bayesian reasoning without
instruction"): a disease of prior 1%, a test of sensitivity 99% and false-positive rate 5%.  A positive
result has evidence P(+) = 0.01 x 0.99 + 0.99 x 0.05 = 0.0594, and the posterior P(sick | +) = 0.0099 /
0.0594 = 1/6 exactly: of 10,000 people, 99 sick ones and 495 healthy ones test positive.

Then a continuous hypothesis: a coin's bias theta with a Beta(a, b) prior, updated flip by flip.  The
conjugate posterior is Beta(a + heads, b + tails) and the evidence of the whole sequence has the closed
form B(a + heads, b + tails) / B(a, b) (Gelman et al., "Bayesian Data Analysis", ch. 2); both are checked
against Bayes rule on a grid of theta (the prob room's bayes_rule, midpoint quadrature), and the evidence
also against the product of the one-step predictive probabilities p(x_i | x_<i), the chain rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import torch
import torch.distributions as D

from ...errors import UserError
from ...io.panels import Kind, Panel, Series, plot_panels
from ...prob import bayes_rule
from .registry import add_option, begin, check_config, register, write_plot


@dataclass
class BayesDemoConfig:
    """The test: prior P(sick), sensitivity P(+ | sick), false_positive_rate P(+ | healthy).  The coin:
    `flips` tosses of bias coin_bias, a Beta(prior_a, prior_b) prior, a grid of `grid` cells on [0, 1]."""

    prior: float = 0.01
    sensitivity: float = 0.99
    false_positive_rate: float = 0.05
    coin_bias: float = 0.7
    flips: int = 50
    prior_a: float = 2.0
    prior_b: float = 2.0
    grid: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, integers=("flips", "grid"), positive=("prior_a", "prior_b"))
        for name in ("prior", "sensitivity", "false_positive_rate", "coin_bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise UserError(f"{name.replace('_', '-')} must be a probability strictly between 0 and 1, "
                                f"got {value!r}.")


def diagnostic(cfg: BayesDemoConfig) -> dict:
    """Bayes rule over {sick, healthy} after a positive test, in log space, and in exact rationals."""
    log_prior = torch.tensor([cfg.prior, 1 - cfg.prior], dtype=torch.float64).log()
    log_lik = torch.tensor([cfg.sensitivity, cfg.false_positive_rate], dtype=torch.float64).log()
    log_post, log_evidence = bayes_rule(log_prior, log_lik)
    # the same arithmetic on the decimals as typed, in exact fractions
    p, s, f = (Fraction(str(v)) for v in (cfg.prior, cfg.sensitivity, cfg.false_positive_rate))
    evidence = p * s + (1 - p) * f
    return {"prior": cfg.prior, "sensitivity": cfg.sensitivity,
            "false_positive_rate": cfg.false_positive_rate, "evidence": log_evidence.exp().item(),
            "posterior": log_post[0].exp().item(),
            "evidence_exact": str(evidence), "posterior_exact": str(p * s / evidence)}


def _grid_posterior(cfg: BayesDemoConfig, heads: int, tails: int, theta: torch.Tensor):
    """Bayes rule over the grid cells: (posterior density at the midpoints, log evidence)."""
    log_prior = D.Beta(cfg.prior_a, cfg.prior_b).log_prob(theta) - math.log(cfg.grid)  # cell masses
    log_lik = heads * theta.log() + tails * torch.log1p(-theta)
    log_post, log_evidence = bayes_rule(log_prior, log_lik)
    return log_post.exp() * cfg.grid, log_evidence.item()


def coin(cfg: BayesDemoConfig) -> dict:
    """Flip-by-flip conjugate updates, with the grid and the chain rule beside the closed forms."""
    g = torch.Generator().manual_seed(cfg.seed)
    x = (torch.rand(cfg.flips, generator=g, dtype=torch.float64) < cfg.coin_bias).long()
    theta = (torch.arange(cfg.grid, dtype=torch.float64) + 0.5) / cfg.grid
    a0, b0 = cfg.prior_a, cfg.prior_b
    log_beta0 = math.lgamma(a0) + math.lgamma(b0) - math.lgamma(a0 + b0)
    steps = {"heads": [0], "closed": [0.0], "grid": [0.0], "sequential": [0.0], "mean": [a0 / (a0 + b0)],
             "sd": [math.sqrt(a0 * b0 / ((a0 + b0) ** 2 * (a0 + b0 + 1)))]}
    gap = 0.0
    for i, xi in enumerate(x.tolist(), start=1):
        h = steps["heads"][-1] + xi
        a, b = a0 + h, b0 + i - h
        predictive = (a - xi) / (a0 + b0 + i - 1)  # p(heads | the flips before), under the posterior so far
        steps["sequential"].append(steps["sequential"][-1] + math.log(predictive if xi else 1 - predictive))
        steps["closed"].append(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b) - log_beta0)
        density, log_ev = _grid_posterior(cfg, h, i - h, theta)
        steps["grid"].append(log_ev)
        steps["heads"].append(h)
        steps["mean"].append(a / (a + b))
        steps["sd"].append(math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))
        gap = max(gap, (density - D.Beta(a, b).log_prob(theta).exp()).abs().max().item())
    heads = steps["heads"][-1]
    return {"flips": cfg.flips, "heads": heads, "prior_beta": [a0, b0],
            "posterior_beta": [a0 + heads, b0 + cfg.flips - heads], "posterior_mean": steps["mean"][-1],
            "log_evidence": steps["closed"][-1], "log_evidence_grid": steps["grid"][-1],
            "log_evidence_sequential": steps["sequential"][-1], "max_density_gap": gap, "steps": steps,
            "x": x.tolist()}


def _explain(res: dict, cfg: BayesDemoConfig, out: TextIO) -> None:
    d, c = res["diagnostic"], res["coin"]
    print("A positive test.  Hypotheses: sick, healthy.", file=out)
    print(f"  prior       P(sick)          = {d['prior']:g}", file=out)
    print(f"  likelihood  P(+ | sick)      = {d['sensitivity']:g} (sensitivity), P(+ | healthy) = "
          f"{d['false_positive_rate']:g} (false positive rate)", file=out)
    print(f"  evidence    P(+)             = {d['evidence']:.6g} = {d['evidence_exact']} exactly", file=out)
    print(f"  posterior   P(sick | +)      = {d['posterior']:.6g} = {d['posterior_exact']} exactly "
          "(Bayes rule in log space; exact fractions)", file=out)
    n = 10_000
    sick = n * d["prior"]
    print(f"  of {n} people, {sick * d['sensitivity']:.0f} sick and "
          f"{(n - sick) * d['false_positive_rate']:.0f} healthy ones test positive: most positives are "
          "healthy", file=out)
    a, b = c["posterior_beta"]
    print(f"\nA coin of bias {cfg.coin_bias:g}, {c['flips']} flips, {c['heads']} heads; prior "
          f"Beta({cfg.prior_a:g}, {cfg.prior_b:g}), posterior Beta({a:g}, {b:g}), "
          f"mean {c['posterior_mean']:.4f}", file=out)
    print(f"  grid of {cfg.grid} cells against the conjugate posterior: largest density gap over all "
          f"{c['flips']} updates {c['max_density_gap']:.2e}", file=out)
    print(f"  log evidence log p(x_1..n): closed form {c['log_evidence']:.6f}, chain rule of predictives "
          f"{c['log_evidence_sequential']:.6f}, grid {c['log_evidence_grid']:.6f} nats", file=out)


def _options(parser) -> None:
    for name, text in (("prior", "P(sick)"), ("sensitivity", "P(+ | sick)"),
                       ("false_positive_rate", "P(+ | healthy)"), ("coin_bias", "the coin's true bias"),
                       ("flips", "coin flips"), ("prior_a", "a of the Beta(a, b) prior"),
                       ("prior_b", "b of the Beta(a, b) prior"), ("grid", "grid cells on [0, 1]")):
        add_option(parser, BayesDemoConfig, name, text)


@register("bayes", BayesDemoConfig, "Bayes rule named: a diagnostic test (posterior 1/6), a coin's bias "
          "updated flip by flip", options=_options)
def run_bayes_demo(cfg: BayesDemoConfig, plot: str | Path | None = None, *, progress: bool = True,
                   out: TextIO | None = None) -> dict:
    """{"posterior": P(sick | +), "evidence": P(+), "diagnostic": {...}, "coin": {...}, "plot"}."""
    out = begin(plot, out)
    d = diagnostic(cfg)
    res = {"posterior": d["posterior"], "evidence": d["evidence"], "diagnostic": d, "coin": coin(cfg)}
    _explain(res, cfg, out)
    res["plot"] = write_plot(plot, lambda path: _plot(path, res, cfg), out)
    return res


def _plot(path, res: dict, cfg: BayesDemoConfig) -> Path:
    d, c = res["diagnostic"], res["coin"]
    names = ["prior\nP(sick)", "likelihood\nP(+ | sick)", "likelihood\nP(+ | healthy)", "evidence\nP(+)",
             "posterior\nP(sick | +)"]
    values = [d["prior"], d["sensitivity"], d["false_positive_rate"], d["evidence"], d["posterior"]]
    test = Panel(f"a positive test: posterior = prior x likelihood / evidence = {d['posterior_exact']}", "",
                 "probability", [Series("", list(range(5)), values, Kind.BARS)], xticklabels=names)
    theta = torch.linspace(0.001, 0.999, 500, dtype=torch.float64)
    shown = [k for k in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500) if k <= c["flips"]]
    lines = []
    for k in shown:
        a, b = cfg.prior_a + c["steps"]["heads"][k], cfg.prior_b + k - c["steps"]["heads"][k]
        lines.append(Series(f"after {k} flips: Beta({a:g}, {b:g})", theta.tolist(),
                            D.Beta(a, b).log_prob(theta).exp().tolist()))
    top = max(max(s.y) for s in lines)
    grid = (torch.arange(40, dtype=torch.float64) + 0.5) / 40  # midpoints of 40 cells
    density, _ = _grid_posterior(_coarse(cfg, 40), c["heads"], c["flips"] - c["heads"], grid)
    lines.append(Series("grid Bayes rule, last update", grid.tolist(), density.tolist(), Kind.POINTS))
    lines.append(Series(f"true bias {cfg.coin_bias:g}", [cfg.coin_bias] * 2, [0, top], Kind.DASHED))
    post = Panel("the coin's posterior, flip by flip", "bias theta", "density", lines)
    k = list(range(c["flips"] + 1))
    ev = Panel("evidence of the first n flips", "flips n", "log p(x_1..n) (nats)", [
        Series("closed form B(a+h, b+t) / B(a, b)", k, c["steps"]["closed"]),
        Series("product of predictives p(x_i | x_<i)", k, c["steps"]["sequential"], Kind.DASHED),
        Series("grid Bayes rule", k[::5], c["steps"]["grid"][::5], Kind.POINTS),
    ])
    mean, sd = c["steps"]["mean"], c["steps"]["sd"]
    conc = Panel("posterior mean +- 2 sd narrows onto the true bias", "flips n", "bias theta", [
        Series("mean +- 2 sd", k, mean, Kind.BAND, lower=[m - 2 * s for m, s in zip(mean, sd)],
               upper=[m + 2 * s for m, s in zip(mean, sd)]),
        Series("posterior mean", k, mean),
        Series(f"true bias {cfg.coin_bias:g}", [0, c["flips"]], [cfg.coin_bias] * 2, Kind.DASHED),
    ])
    return plot_panels(path, [test, post, ev, conc],
                       title="Bayes rule: prior, likelihood, evidence, posterior")


def _coarse(cfg: BayesDemoConfig, cells: int) -> BayesDemoConfig:
    """The same prior on a coarser grid: the plot's points are readable where 2000 would be a smear."""
    return BayesDemoConfig(prior_a=cfg.prior_a, prior_b=cfg.prior_b, grid=cells, seed=cfg.seed)
