"""`lowerbound demo mc`: what Monte Carlo buys and what it costs.  The integral E[X^2] = 1, X ~ N(0, 1), is
estimated by the mean of n draws for n = 10, 100, ..., 10^6, each with its standard error s / sqrt(n) and
the 95% interval estimate +- 1.96 stderr (Robert & Casella, "Monte Carlo Statistical Methods" (2004), ch. 3):

    error ~ sqrt(Var f / n): ten times the accuracy costs a hundred times the draws (slope -1/2 on log-log
    axes), whatever the dimension; the interval covers the truth 95% of the time once the central limit
    theorem holds (f = x^2 is skewed: at n = 10 the interval covers less, visibly).

Both are measured over independent repeats.  Then a rare event, P(X > 4) = Phi(-4) = 3.2e-5: plain Monte
Carlo sees a handful of hits in 10^5 draws, while importance sampling (Kahn & Marshall 1953; Owen, "Monte
Carlo theory, methods and examples", ch. 9) draws from q = N(4, 1), where the event is common, and weights
each draw by p(x) / q(x) = exp(8 - 4x).  Its per-draw variance has the closed form e^16 Phi(-8) - p^2,
thousands of times below plain Monte Carlo's p (1 - p).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.distributions as D
from tqdm import tqdm

from ...errors import UserError
from ...io.panels import Kind, Panel, Series, plot_panels
from ...prob import monte_carlo
from .registry import add_option, begin, check_config, register, write_plot

_CHUNK = 10_000_000  # draws held in memory at once (80 MB of float64)


@dataclass
class MCDemoConfig:
    """n = 10^1 .. 10^max_exponent draws, `repeats` independent estimates at each n; coverage pooled over
    n >= clt_from; the rare event X > threshold estimated with rare_samples draws each way."""

    max_exponent: int = 6
    repeats: int = 200
    clt_from: int = 1000
    threshold: float = 4.0
    rare_samples: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, integers=("max_exponent", "repeats", "clt_from", "rare_samples"),
                     positive=("threshold",))
        if self.max_exponent > 7:
            raise UserError(f"max-exponent must be at most 7 (10^7 draws per estimate), "
                            f"got {self.max_exponent}.")
        if self.repeats < 2 or self.rare_samples < 2:
            raise UserError("repeats and rare-samples must be at least 2.")
        if self.clt_from > 10**self.max_exponent:
            raise UserError(f"clt-from ({self.clt_from}) must not exceed the largest n, "
                            f"10^{self.max_exponent}.")


def _estimates(n: int, repeats: int, g: torch.Generator):
    """`repeats` independent estimates of E[X^2] from n draws each: (value [R], stderr [R])."""
    values, stderrs = [], []
    per_call = max(1, _CHUNK // n)
    for start in range(0, repeats, per_call):
        r = min(per_call, repeats - start)
        q = D.Normal(torch.zeros(r, dtype=torch.float64), 1.0)
        est = monte_carlo(lambda x: x**2, q, n, generator=g)  # draws [n, r] -> estimates [r]
        values.append(est.value)
        stderrs.append(est.stderr)
    return torch.cat(values), torch.cat(stderrs)


def _slope(ns: list[int], errors: list[float]) -> tuple[float, float]:
    """Least-squares slope of log10 error on log10 n, with its standard error (nan for two points)."""
    x, y = torch.tensor(ns, dtype=torch.float64).log10(), torch.tensor(errors, dtype=torch.float64).log10()
    xc = x - x.mean()
    slope = (xc * (y - y.mean())).sum() / (xc**2).sum()
    resid = y - y.mean() - slope * xc
    dof = len(ns) - 2
    se = (resid.pow(2).sum() / dof / (xc**2).sum()).sqrt().item() if dof > 0 else math.nan
    return slope.item(), se


def _convergence(cfg: MCDemoConfig, g: torch.Generator, progress: bool) -> dict:
    """The table over n, the pooled coverage and the slope of the root-mean-square error."""
    ns = [10**k for k in range(1, cfg.max_exponent + 1)]
    table, hits, trials = [], 0, 0
    for n in tqdm(ns, desc="mc demo", file=sys.stderr, disable=not progress, leave=False):
        value, stderr = _estimates(n, cfg.repeats, g)
        covered = ((value - 1.0).abs() <= 1.96 * stderr).double()
        v, s = value[0].item(), stderr[0].item()  # the first run, shown in full
        table.append({"n": n, "estimate": v, "stderr": s, "lower": v - 1.96 * s, "upper": v + 1.96 * s,
                      "rmse": (value - 1.0).pow(2).mean().sqrt().item(), "mean_stderr": stderr.mean().item(),
                      "coverage": covered.mean().item()})
        if n >= cfg.clt_from:
            hits, trials = hits + int(covered.sum().item()), trials + cfg.repeats
    coverage = hits / trials
    slope, slope_se = _slope(ns, [row["rmse"] for row in table]) if len(ns) > 1 else (math.nan, math.nan)
    return {"table": table, "coverage": coverage, "coverage_trials": trials,
            "coverage_stderr": math.sqrt(coverage * (1 - coverage) / trials),
            "slope": slope, "slope_stderr": slope_se}


def _rare_event(cfg: MCDemoConfig, g: torch.Generator) -> dict:
    """P(X > t) by plain Monte Carlo and by importance sampling from N(t, 1), with per-draw variances."""
    t, n = cfg.threshold, cfg.rare_samples
    zero = torch.zeros((), dtype=torch.float64)
    truth = torch.special.ndtr(-torch.tensor(t, dtype=torch.float64)).item()
    plain = monte_carlo(lambda x: (x > t).double(), D.Normal(zero, 1.0), n, generator=g)
    # weight p(x) / q(x) for p = N(0, 1), q = N(t, 1): exp(t^2 / 2 - t x)
    weighted = monte_carlo(lambda x: (x > t).double() * torch.exp(t * t / 2 - t * x), D.Normal(zero + t, 1.0),
                           n, generator=g)
    # E_q[1{x > t} w^2] = e^{t^2} Phi(-2t): the second moment of the weighted indicator, in closed form
    is_var = math.exp(t * t) * torch.special.ndtr(-2 * torch.tensor(t, dtype=torch.float64)).item() - truth**2
    out = {"threshold": t, "samples": n, "truth": truth}
    for name, est, exact_var in (("plain", plain, truth * (1 - truth)), ("importance", weighted, is_var)):
        se = est.stderr.item()
        out[name] = {"estimate": est.item(), "stderr": se, "variance": se**2 * n, "variance_exact": exact_var}
    out["variance_ratio_exact"] = truth * (1 - truth) / is_var
    return out


def _explain(res: dict, cfg: MCDemoConfig, out: TextIO) -> None:
    print("E[X^2] = 1 for X ~ N(0, 1), estimated by the mean of n draws; one run's estimate +- stderr and "
          f"95% interval; over {cfg.repeats} runs: root-mean-square error (theory sqrt(2/n)) and coverage",
          file=out)
    print(f"{'n':>9}  {'estimate +- stderr':>22}  {'95% interval':>22}  {'rmse':>9}  {'sqrt(2/n)':>9}  "
          f"{'coverage':>8}", file=out)
    for row in res["table"]:
        est = f"{row['estimate']:.5f} +- {row['stderr']:.5f}"
        ci = f"[{row['lower']:.4f}, {row['upper']:.4f}]"
        print(f"{row['n']:>9}  {est:>22}  {ci:>22}  {row['rmse']:>9.2e}  {math.sqrt(2 / row['n']):>9.2e}  "
              f"{row['coverage']:>8.3f}", file=out)
    print(f"coverage of the 95% interval for n >= {cfg.clt_from}: {res['coverage']:.3f} +- "
          f"{res['coverage_stderr']:.3f} (binomial stderr, {res['coverage_trials']} intervals)", file=out)
    print(f"slope of log10 rmse against log10 n: {res['slope']:.3f} +- {res['slope_stderr']:.3f} (least "
          "squares; theory -0.5): 10x the accuracy costs 100x the draws", file=out)
    r = res["rare_event"]
    print(f"\nrare event P(X > {r['threshold']:g}) = {r['truth']:.4e} (exact), {r['samples']} draws each "
          "way:", file=out)
    for name, label in (("plain", "plain Monte Carlo   "), ("importance", "importance, N(t, 1)")):
        e = r[name]
        print(f"  {label}  {e['estimate']:.4e} +- {e['stderr']:.1e}   per-draw variance "
              f"{e['variance']:.2e} (exact {e['variance_exact']:.2e})", file=out)
    print(f"  importance sampling needs {r['variance_ratio_exact']:.0f}x fewer draws for the same stderr",
          file=out)


def _options(parser) -> None:
    add_option(parser, MCDemoConfig, "max_exponent", "largest n is 10^this")
    add_option(parser, MCDemoConfig, "repeats", "independent estimates at each n")
    add_option(parser, MCDemoConfig, "clt_from", "pool the coverage over n from this on")
    add_option(parser, MCDemoConfig, "threshold", "the rare event is X > this")
    add_option(parser, MCDemoConfig, "rare_samples", "draws for the rare event, each way")


@register("mc", MCDemoConfig, "Monte Carlo: error ~ n^-1/2, 95% intervals that cover, importance sampling "
          "for a rare event", options=_options)
def run_mc_demo(cfg: MCDemoConfig, plot: str | Path | None = None, *, progress: bool = True,
                out: TextIO | None = None) -> dict:
    """{"table": [{"n", "estimate", "stderr", "lower", "upper", "rmse", "mean_stderr", "coverage"}],
    "coverage", "coverage_stderr", "coverage_trials", "slope", "slope_stderr", "rare_event", "plot"}."""
    out = begin(plot, out)
    g = torch.Generator().manual_seed(cfg.seed)
    res = _convergence(cfg, g, progress)
    res["rare_event"] = _rare_event(cfg, g)
    _explain(res, cfg, out)
    res["plot"] = write_plot(plot, lambda path: _plot(path, res, cfg), out)
    return res


def _plot(path, res: dict, cfg: MCDemoConfig) -> Path:
    rows = res["table"]
    ns = [row["n"] for row in rows]
    error = Panel(f"error over {cfg.repeats} runs: slope {res['slope']:.2f} (theory -0.5)", "draws n",
                  "error of the estimate (E[X^2] = 1)", logx=True, logy=True, series=[
                      Series("root-mean-square error", ns, [row["rmse"] for row in rows], Kind.POINTS),
                      Series("mean reported stderr", ns, [row["mean_stderr"] for row in rows]),
                      Series("theory sqrt(Var f / n) = sqrt(2 / n)", ns, [math.sqrt(2 / n) for n in ns],
                             Kind.DASHED),
                  ])
    one = Panel("one run: estimate and its 95% interval", "draws n", "estimate of E[X^2]", logx=True, series=[
        Series("estimate +- 1.96 stderr", ns, [row["estimate"] for row in rows], Kind.POINTS,
               lower=[row["lower"] for row in rows], upper=[row["upper"] for row in rows]),
        Series("truth: 1", ns, [1.0] * len(ns), Kind.DASHED),
    ])
    band = 1.96 * math.sqrt(0.95 * 0.05 / cfg.repeats)
    cover = Panel("how often the 95% interval covers the truth", "draws n", "coverage", logx=True, series=[
        Series(f"expected spread over {cfg.repeats} runs", ns, [0.95] * len(ns), Kind.BAND,
               lower=[0.95 - band] * len(ns), upper=[min(1.0, 0.95 + band)] * len(ns)),
        Series("coverage over runs", ns, [row["coverage"] for row in rows], Kind.POINTS),
        Series("0.95", ns, [0.95] * len(ns), Kind.DASHED),
    ])
    r = res["rare_event"]
    est = [r["plain"]["estimate"], r["importance"]["estimate"]]
    se = [r["plain"]["stderr"], r["importance"]["stderr"]]
    lower, upper = [e - 1.96 * s for e, s in zip(est, se)], [e + 1.96 * s for e, s in zip(est, se)]
    rare = Panel(f"P(X > {r['threshold']:g}) from {r['samples']} draws each way: "
                 f"{r['variance_ratio_exact']:.0f}x less variance", "", "probability",
                 xticklabels=[f"plain Monte Carlo\nvariance per draw {r['plain']['variance_exact']:.1e}",
                              f"importance sampling from N({r['threshold']:g}, 1)\nvariance per draw "
                              f"{r['importance']['variance_exact']:.1e}"], series=[
                     Series("estimate +- 1.96 stderr", [0, 1], est, Kind.POINTS, lower=lower, upper=upper),
                     Series(f"exact {r['truth']:.3e}", [-0.3, 1.3], [r["truth"]] * 2, Kind.DASHED),
                 ])
    return plot_panels(path, [error, one, cover, rare], title="Monte Carlo: the n^-1/2 law, intervals, "
                       "importance sampling")
