"""`lowerbound demo kl`: KL is not a distance.  One Gaussian q = N(m, s^2) is fitted to the two-mode mixture
p = 0.5 N(-a, 1) + 0.5 N(a, 1) (a = 3) twice, by gradient descent (Adam) on Monte Carlo estimates:

    forward  KL(p || q) = H(p, q) - H(p)     draws from p; mass-covering.  H(p) does not depend on q, so
                                            this is maximum likelihood, whose optimum matches moments:
                                            m = 0, s^2 = Var_p = 1 + a^2 = 10
    reverse  KL(q || p) = H(q, p) - H(q)     draws from q, reparameterized z = m + s eps; mode-seeking: the
                                            cross-entropy H(q, p) punishes q's mass between the modes,
                                            where p is tiny; the entropy H(q) keeps q from collapsing.
                                            The optimum sits on one mode, m ~ +-a, s ~ 1, KL ~ log 2

(Bishop, "Pattern Recognition and Machine Learning" (2006), sec. 10.1.2 and fig. 10.3; Minka 2005,
"Divergence measures and message passing".)  Each fit uses one fixed set of draws for all its steps
(common random numbers), so its objective is one smooth function and gradient descent converges to its
minimizer: for the forward fit, exactly the mean and the (1/N) standard deviation of the draws, whose
Monte Carlo errors are known.  Reverse KL is not convex in (m, s): started wide and centred
(--init-mean 0 --init-std 3) it stops at a local optimum straddling both modes, KL ~ 0.85 > log 2.
The reported KLs, cross-entropies and entropies are fresh Monte Carlo estimates (or closed forms) with
their standard errors, from the prob room's tools.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.distributions as D
from tqdm import tqdm

from ...errors import UserError
from ...io.panels import Kind, Panel, Series, plot_panels
from ...prob import cross_entropy, draw, entropy, kl_divergence
from ...prob.kl import TailWarning
from .registry import add_option, begin, check_config, register, write_plot


@dataclass
class KLDemoConfig:
    """steps of Adam at learning rate lr on a Monte Carlo objective of `samples` fixed draws; the reported
    numbers use `eval_samples` fresh draws.  q starts at N(init_mean, init_std^2).  a = separation."""

    steps: int = 300
    samples: int = 4096
    eval_samples: int = 100_000
    lr: float = 0.2
    init_mean: float = 1.0
    init_std: float = 0.5
    separation: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, integers=("steps", "samples", "eval_samples"),
                     positive=("lr", "init_std", "separation"), finite=("init_mean",))
        if self.samples < 2 or self.eval_samples < 2:
            raise UserError("samples and eval-samples must be at least 2 to give a standard error.")


def mixture(a: float) -> D.MixtureSameFamily:
    """p = 0.5 N(-a, 1) + 0.5 N(a, 1), in float64."""
    weights = D.Categorical(probs=torch.tensor([0.5, 0.5], dtype=torch.float64))
    return D.MixtureSameFamily(weights, D.Normal(torch.tensor([-a, a], dtype=torch.float64),
                                                 torch.ones(2, dtype=torch.float64)))


def _objective(direction: str, p: D.Distribution, q: D.Distribution, n: int, seed: int) -> torch.Tensor:
    """The Monte Carlo estimate of KL in `direction` on the same n draws at every call (a fresh generator
    with the same seed): differentiable in q's parameters."""
    g = torch.Generator().manual_seed(seed)
    a, b = (p, q) if direction == "forward" else (q, p)
    with warnings.catch_warnings():  # only the value drives the step: its error bar is not used here
        warnings.simplefilter("ignore", TailWarning)
        return kl_divergence(a, b, method="mc", num_samples=n, generator=g).value


def _fit(direction: str, p, cfg: KLDemoConfig, seed: int, progress: bool) -> tuple[float, float, list[float]]:
    """Minimize KL in `direction` over (m, log s) by Adam; returns (m, s, objective per step)."""
    loc = torch.tensor(cfg.init_mean, dtype=torch.float64, requires_grad=True)
    log_scale = torch.tensor(math.log(cfg.init_std), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([loc, log_scale], lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr / 100)
    curve = []
    bar = tqdm(range(cfg.steps), desc=f"{direction} KL", file=sys.stderr, disable=not progress, leave=False)
    for _ in bar:
        loss = _objective(direction, p, D.Normal(loc, log_scale.exp()), cfg.samples, seed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        curve.append(loss.item())
    return loc.item(), log_scale.exp().item(), curve


def _report(direction: str, p, q: D.Normal, n: int, seed: int) -> dict:
    """Both KLs of the pair (p, q) and the split of the fitted direction, each with its stderr.

    The cross-entropy and the entropy of a Monte Carlo split use the same draws as the KL (same seed),
    so KL = cross-entropy - entropy holds draw by draw; a closed-form entropy is exact."""
    def gen(k: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed + k)

    with warnings.catch_warnings():  # a heavy tail shows as "no stderr" in the explanation instead
        warnings.simplefilter("ignore", TailWarning)
        est = {
            "kl_forward": kl_divergence(p, q, method="mc", num_samples=n, generator=gen(1)),
            "kl_reverse": kl_divergence(q, p, method="mc", num_samples=n, generator=gen(2)),
        }
        if direction == "forward":
            est["cross_entropy"] = cross_entropy(p, q, method="mc", num_samples=n, generator=gen(1))
            est["entropy"] = entropy(p, method="mc", num_samples=n, generator=gen(1))
        else:
            est["cross_entropy"] = cross_entropy(q, p, method="mc", num_samples=n, generator=gen(2))
            est["entropy"] = entropy(q)  # closed form: log s + log(2 pi e) / 2
    out = {"objective": "KL(p || q)" if direction == "forward" else "KL(q || p)",
           "mean": q.loc.item(), "std": q.scale.item()}
    out.update({k: e.item() for k, e in est.items()})
    out["stderr"] = {k: e.stderr.item() for k, e in est.items()}
    return out


def _pm(fit: dict, key: str) -> str:
    """value +- stderr; a closed form says so, and so does an estimate whose draws are too heavy-tailed
    for an interval (prob.kl reports its stderr as inf: Pareto k-hat > 1/2)."""
    value, se = fit[key], fit["stderr"][key]
    if se == 0:
        return f"{value:.4f} (closed form)"
    if not math.isfinite(se):
        return f"{value:.4f} (no stderr: heavy-tailed draws)"
    return f"{value:.4f} +- {se:.4f}"


def _explain(res: dict, cfg: KLDemoConfig, out: TextIO) -> None:
    a, f, r = cfg.separation, res["forward"], res["reverse"]
    print(f"p = 0.5 N(-{a:g}, 1) + 0.5 N({a:g}, 1); q = N(m, s^2) fitted by Adam on {cfg.samples} fixed "
          f"Monte Carlo draws, {cfg.steps} steps; numbers below: {cfg.eval_samples} fresh draws, +- stderr",
          file=out)
    for name, fit, why in (("forward KL(p || q)", f, f"mass-covering; optimum m = 0, s = sqrt(1 + a^2) = "
                            f"{math.sqrt(1 + a * a):.4f}"),
                           ("reverse KL(q || p)", r, "mode-seeking; optimum on one mode, s close to 1")):
        print(f"\n{name}: {why}", file=out)
        print(f"  fitted q = N({fit['mean']:.4f}, {fit['std']:.4f}^2)", file=out)
        if "sample_mean" in fit:
            print(f"  mean and std of the {cfg.samples} draws it was fitted on: {fit['sample_mean']:.4f}, "
                  f"{fit['sample_std']:.4f} (maximum likelihood matches moments)", file=out)
        print(f"  KL(p || q) = {_pm(fit, 'kl_forward')}   KL(q || p) = {_pm(fit, 'kl_reverse')} nats: "
              "not the same number", file=out)
        print(f"  split of {fit['objective']}: cross-entropy {_pm(fit, 'cross_entropy')} - entropy "
              f"{_pm(fit, 'entropy')}", file=out)
    h_wide = _normal_entropy(f["std"])
    print(f"\nThe reverse objective H(q, p) - H(q): its entropy term pulls q wide (the forward fit's wide q "
          f"has H(q) = {h_wide:.3f} against {r['entropy']:.3f}),\nits cross-entropy term pulls q onto one "
          f"mode (the wide q pays H(q, p) = {f['kl_reverse'] + h_wide:.3f} against {r['cross_entropy']:.3f}, "
          f"for its mass near 0, where log p(0) = {res['log_p_at_0']:.2f}).", file=out)
    print("The forward objective H(p, q) - H(p) has an entropy term that q cannot move: minimizing it is "
          "maximum likelihood.", file=out)


def _options(parser) -> None:
    add_option(parser, KLDemoConfig, "steps", "Adam steps per fit")
    add_option(parser, KLDemoConfig, "samples", "fixed Monte Carlo draws of each fit's objective")
    add_option(parser, KLDemoConfig, "eval_samples", "fresh draws for the reported numbers")
    add_option(parser, KLDemoConfig, "lr", "Adam learning rate")
    add_option(parser, KLDemoConfig, "init_mean", "mean of q at the start")
    add_option(parser, KLDemoConfig, "init_std", "std of q at the start")
    add_option(parser, KLDemoConfig, "separation", "the modes of p sit at -a and +a")


@register("kl", KLDemoConfig, "one Gaussian fitted to two modes by forward and by reverse KL: "
          "KL(p||q) != KL(q||p)", options=_options)
def run_kl_demo(cfg: KLDemoConfig, plot: str | Path | None = None, *, progress: bool = True,
                out: TextIO | None = None) -> dict:
    """Both fits and their numbers: {"forward", "reverse": {"mean", "std", "kl_forward", "kl_reverse",
    "cross_entropy", "entropy", "stderr", "curve"}, "log_p_at_0", "plot"}; "forward" also holds
    "sample_mean", "sample_std": the (1/N) moments of the draws of p it was fitted on.  Nats throughout."""
    out = begin(plot, out)
    p = mixture(cfg.separation)
    res: dict = {}
    for k, direction in enumerate(("forward", "reverse")):
        seed = cfg.seed * 1000 + 10 * k
        m, s, curve = _fit(direction, p, cfg, seed, progress)
        res[direction] = _report(direction, p, D.Normal(torch.tensor(m, dtype=torch.float64),
                                                        torch.tensor(s, dtype=torch.float64)),
                                 cfg.eval_samples, seed + 1)
        res[direction]["curve"] = curve
    x = draw(p, (cfg.samples,), generator=torch.Generator().manual_seed(cfg.seed * 1000))  # forward's draws
    res["forward"].update(sample_mean=x.mean().item(), sample_std=x.std(unbiased=False).item())
    res["log_p_at_0"] = p.log_prob(torch.zeros((), dtype=torch.float64)).item()
    _explain(res, cfg, out)
    res["plot"] = write_plot(plot, lambda path: _plot(path, p, res, cfg), out)
    return res


def _normal_entropy(std: float) -> float:
    return math.log(std) + 0.5 * math.log(2 * math.pi * math.e)


def _plot(path, p, res: dict, cfg: KLDemoConfig) -> Path:
    a = cfg.separation
    xs = torch.linspace(-a - 6, a + 6, 601, dtype=torch.float64)
    f, r = res["forward"], res["reverse"]

    def density(d) -> list[float]:
        return d.log_prob(xs).exp().tolist()

    fits = Panel("p and the two fitted Gaussians", "x", "density", [
        Series(f"p = 0.5 N(-{a:g}, 1) + 0.5 N({a:g}, 1)", xs.tolist(), density(p), Kind.BAND,
               lower=[0.0] * len(xs), upper=density(p)),
        Series(f"q by forward KL(p||q): N({f['mean']:.2f}, {f['std']:.2f}^2)", xs.tolist(),
               density(D.Normal(f["mean"], f["std"]))),
        Series(f"q by reverse KL(q||p): N({r['mean']:.2f}, {r['std']:.2f}^2)", xs.tolist(),
               density(D.Normal(r["mean"], r["std"]))),
    ])
    names = ["KL(p||q)", "KL(q||p)"]
    both = Panel("same pair, two directions: KL is not symmetric", "", "nats", [
        Series("forward fit", [-0.2, 0.8], [f["kl_forward"], f["kl_reverse"]], Kind.BARS, width=0.4),
        Series("reverse fit", [0.2, 1.2], [r["kl_forward"], r["kl_reverse"]], Kind.BARS, width=0.4),
    ], xticklabels=names)
    hq = [_normal_entropy(fit["std"]) for fit in (f, r)]  # H(q), closed form
    split = Panel("reverse KL(q||p) = H(q,p) - H(q), at each fitted q", "", "nats", [
        Series("q of the forward fit (wide)", [-0.2, 0.8, 1.8],
               [f["kl_reverse"] + hq[0], hq[0], f["kl_reverse"]], Kind.BARS, width=0.4),
        Series("q of the reverse fit (one mode)", [0.2, 1.2, 2.2],
               [r["kl_reverse"] + hq[1], hq[1], r["kl_reverse"]], Kind.BARS, width=0.4),
    ], xticklabels=["cross-entropy H(q,p)", "entropy H(q)", "KL(q||p)"])
    steps = list(range(1, cfg.steps + 1))
    curves = Panel("gradient descent on the Monte Carlo KL", "Adam step", "KL estimate (nats)", logy=True,
                   series=[
        Series("forward KL(p||q)", steps, f["curve"]),
        Series("reverse KL(q||p)", steps, r["curve"]),
        Series("log 2 (one mode of two)", [1, cfg.steps], [math.log(2)] * 2, Kind.DASHED),
    ])
    return plot_panels(path, [fits, both, split, curves],
                       title="Forward vs reverse KL: one Gaussian, two modes")
