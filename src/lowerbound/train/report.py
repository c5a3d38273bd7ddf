"""Assemble report.md at the end of a run: the bound on every split, pictures, diagnostics.

Pictures come from the io room's services when they are present (io.curves for the loss curve,
io.images for sample grids); optional model hooks are called when a model offers them:
`diagnostics(x) -> dict` (e.g. a VAE's KL per latent dimension) and `reconstruct(x, generator)`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..io import metrics as metrics_io
from ..io import report as report_io
from . import runtime
from .rundir import RunDir, save_picture, save_samples

RECONSTRUCTIONS = 16


def plain(v: Any) -> Any:
    """Tensors and numbers of a diagnostics dict as JSON values."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.detach().cpu().tolist()
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def diagnostics(model, x: torch.Tensor) -> dict[str, Any]:
    hook = getattr(model, "diagnostics", None)
    if hook is None:
        return {}
    with torch.no_grad():
        return plain(hook(x.to(model.device)))


def loss_curve(files: RunDir, unit: str) -> Path | None:
    """curves.png: train loss and validation bound at the evaluation steps."""
    try:
        from ..io.curves import plot_curves
    except ImportError:
        return None
    rows = metrics_io.read(files.path / "metrics.csv") if (files.path / "metrics.csv").is_file() else []
    rows = [r for r in rows if r.get(f"valid_{unit}", "") != ""]
    if len(rows) < 2:
        return None
    steps = [int(r["step"]) for r in rows]
    curves = {"train loss": [float(r[f"loss_{unit}"]) for r in rows],
              "validation bound": [float(r[f"valid_{unit}"]) for r in rows]}
    path = files.path / "curves.png"
    label = "bits/dim" if unit == "bpd" else "nats"
    plot_curves(path, steps, curves, xlabel="step", ylabel=label, title="training")
    return path


def reconstructions(model, x: torch.Tensor, files: RunDir, seed: int) -> Path | None:
    """reconstructions.png: inputs (odd rows) above their reconstructions (even rows)."""
    hook = getattr(model, "reconstruct", None)
    if hook is None or model.levels is None:
        return None
    x = x[:RECONSTRUCTIONS].to(model.device)
    with torch.no_grad():
        r = hook(x, generator=runtime.generator(seed, model.device)).cpu()
    rows = []
    for i in range(0, len(x), 8):
        rows += [x[i:i + 8].cpu(), r[i:i + 8]]
    return save_picture(files.path / "reconstructions.png", torch.cat(rows), model.levels, nrow=8)


def write_report(cfg, files: RunDir, model, dataset, results: dict, info: dict[str, Any]) -> Path:
    unit = "bpd" if dataset.levels is not None else "nats"
    x = dataset.test[: cfg.eval_batch_size]
    info["diagnostics"] = diagnostics(model, x)
    images = {}
    for caption, path in (("Loss curve", loss_curve(files, unit)),
                          ("Samples (exported weights, fixed seed)",
                           save_samples(files.path / "samples" / "final.png", model, cfg.num_samples)
                           if cfg.num_samples else None),
                          ("Reconstructions (inputs above, reconstructions below)",
                           reconstructions(model, x, files, cfg.seed))):
        if path is not None:
            images[caption] = str(Path(path).relative_to(files.path))
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    options = "".join(f", {k}={v}" for k, v in cfg.data_options.items())
    facts = {"family": cfg.family, "data": f"{cfg.data} ({len(dataset.train)} train, "
             f"{len(dataset.test)} test, D = {dataset.dims}{options})", "parameters": params,
             "steps": info.get("steps"), "stopped by": info.get("stopped"),
             "weights scored": info.get("selected")}
    if info.get("examples_per_s"):
        facts["training throughput (examples/s)"] = f"{info['examples_per_s']:.0f}"
        facts["training time (s)"] = f"{info.get('train_seconds', 0.0):.1f}"
    if info.get("precision"):
        facts["precision"] = info["precision"] + (" (auto)" if cfg.precision == "auto" else "")
    notes = [f"Train is scored on its first {results['train'].get('n', '?')} examples (as many as the "
             "test set); validation is the held-out fraction of train. Every number is an upper bound "
             "on -log P(x) unless its estimator is exact; the interval is over examples."
             if "train" in results else
             "Validation is the held-out fraction of train; the interval is over examples."]
    notes = notes if results else []  # a model without a likelihood: no bound table to explain
    gap = _gap(results, unit)
    fitted = info.get("stopped") == "fitted"
    if gap is not None and gap > 0.05:
        chose = ("the model was fitted in closed form or by EM" if fitted else
                 "early stopping on the validation bound chose the weights")
        notes.append(f"Test exceeds train by {gap:.3f} {'bits/dim' if unit == 'bpd' else 'nats'}: "
                     f"the model overfits; {chose}.")
    if info.get("fit", {}).get("refit_on_valid"):
        notes.append("The validation split chose the fit's options and was then refitted on, so its "
                     "number is not held out; only test is.")
    notes += info.get("notes", [])
    return report_io.write(files.path / "report.md", {
        "title": f"{cfg.family} on {cfg.data}", "facts": facts, "results": results, "notes": notes,
        "diagnostics": info["diagnostics"], "images": images, "config": cfg.to_dict()})


def _gap(results: dict, unit: str) -> float | None:
    key = "bits_per_dim" if unit == "bpd" else "nats"
    try:
        gap = results["test"][key] - results["train"][key]
    except KeyError:
        return None
    return gap if math.isfinite(gap) else None
