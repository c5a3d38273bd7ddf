"""report.md: the end of a run in one page (design.md's run directory).

The bound on each split side by side (so overfitting is visible), its terms, the estimator of
every number, the stopping record, diagnostics a model offers, and the pictures written beside it
(loss curves, last sample grid, reconstructions).  Takes plain values only; the train room
assembles them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import atomic_write_text


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _value(v: Any) -> Any:
    return v.get("value") if isinstance(v, dict) else v


def bound_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: one per split with value, stderr, 95% interval, estimator, then each term,
    each extra (value ± stderr, e.g. a VAE's elbo and gap) and, for data with a known density, the
    KL to the truth in nats (value ± stderr).  A result is a dict like eval's
    LikelihoodResult.to_dict(): bits_per_dim (or nats), stderr, interval, estimator, exact, terms
    (name -> value or {value, stderr}), extras (name -> {value, stderr}), kl_to_truth (None or
    {value, stderr})."""
    if not results:
        return ["No split was scored."]
    first = next(iter(results.values()))
    key = "bits_per_dim" if "bits_per_dim" in first else "nats"
    terms = list(first.get("terms", {}))
    extras = list(dict.fromkeys(k for r in results.values() for k in (r.get("extras") or {})))
    kl = any(r.get("kl_to_truth") is not None for r in results.values())
    head = ["split", "bits/dim" if key == "bits_per_dim" else "nats", "stderr", "95% interval",
            "estimator", *terms, *extras] + (["KL to truth (nats)"] if kl else [])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for split, r in results.items():
        lo, hi = r.get("interval", [None, None])
        cells = [split, _num(r.get(key)), _num(r.get("stderr")), f"[{_num(lo)}, {_num(hi)}]",
                 _estimator(r)]
        cells += [_num(_value(r.get("terms", {}).get(t))) for t in terms]
        cells += [_plus_minus((r.get("extras") or {}).get(e)) for e in extras]
        cells += [_plus_minus(r.get("kl_to_truth"))] if kl else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _plus_minus(v: Any) -> str:
    if not isinstance(v, dict):
        return _num(v)
    return f"{_num(v.get('value'))} ± {_num(v.get('stderr'))}"


def _estimator(r: dict[str, Any]) -> str:
    name = str(r.get("estimator", "?"))
    if r.get("exact"):
        return name if name == "exact" else f"{name} (exact)"
    return f"{name} (upper bound)"


def render(info: dict[str, Any]) -> str:
    """info: title, facts (name -> value), results (split -> result dict), notes (list of str),
    diagnostics (name -> value), images (caption -> relative path), config (dict)."""
    out = [f"# {info.get('title', 'lowerbound run')}", ""]
    facts = info.get("facts", {})
    if facts:
        out += [f"- {k}: {_num(v)}" for k, v in facts.items()] + [""]
    out += ["## Bound", "", *bound_table(info.get("results", {})), ""]
    for note in info.get("notes", []):
        out += [note, ""]
    diagnostics = info.get("diagnostics") or {}
    if diagnostics:
        out += ["## Diagnostics", ""]
        out += [f"- {k}: {_short(v)}" for k, v in diagnostics.items()] + [""]
    for caption, rel in (info.get("images") or {}).items():
        out += [f"## {caption}", "", f"![{caption}]({rel})", ""]
    if info.get("config"):
        import json

        out += ["## Config", "", "```json", json.dumps(info["config"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(out)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 16:
        return "[" + ", ".join(_short(x) for x in v[:16]) + f", ... ({len(v)} values)]"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return str(v)


def write(path: Path, info: dict[str, Any]) -> Path:
    atomic_write_text(Path(path), render(info))
    return Path(path)
