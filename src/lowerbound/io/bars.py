"""A bar chart of bounds: one bar per model, split into its named terms, with an error bar on the total.

Reduce late (design.md): every bound is a sum of named per-example terms, so each bar is drawn as a
stack of its terms' means (same colour for the same term name across bars) and the error bar is the
standard error of the total.  A second estimate per bar (a tighter estimator of the same weights,
e.g. IWAE-1000 beside the ELBO) is drawn as a marker with its own error bar.  A bar without a value
(an implicit model: no likelihood) is left empty and labelled.  matplotlib on the Agg canvas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError


@dataclass
class Bar:
    """One model: total and its stderr (None: no likelihood), terms (name -> mean, same unit; their
    sum is the total), and an optional second estimate (value, stderr, label)."""

    label: str
    total: float | None
    stderr: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    second: tuple[float, float, str] | None = None


def plot_bars(path: str | Path, bars: list[Bar], *, ylabel: str, title: str, dpi: int = 120) -> Path:
    """Write the chart as a PNG to `path`; returns the path."""
    if not bars:
        raise UserError("plot_bars needs at least one bar.")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"the plot path must end in .png, got {str(path)!r}.")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.9 * len(bars) + 2.5), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(t for b in bars for t in b.terms))
    colours = {t: f"C{i % 10}" for i, t in enumerate(names)}
    drawn: set[str] = set()
    top = max([b.total + b.stderr for b in bars if b.total is not None] or [1.0])
    for i, b in enumerate(bars):
        if b.total is None:
            ax.text(i, 0.02 * top, "no likelihood", rotation=90, ha="center", va="bottom", fontsize=8)
            continue
        _stack(ax, i, b, colours, drawn)
        ax.errorbar(i, b.total, yerr=b.stderr, color="black", capsize=4, linewidth=1.2)
        ax.annotate(f"{b.total:.3f}", (i, b.total + b.stderr), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=8)
        if b.second is not None:
            value, err, label = b.second
            ax.errorbar(i + 0.25, value, yerr=err, fmt="D", color="black", markersize=4, capsize=3,
                        label="tighter estimate" if "second" not in drawn else None)
            drawn.add("second")
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b.label for b in bars], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def _stack(ax, i: int, b: Bar, colours: dict[str, str], drawn: set[str]) -> None:
    """The terms of one bar stacked from 0 (negative terms drawn below 0); a bar without terms is one
    grey block.  Each term name enters the legend once."""
    if not b.terms:
        ax.bar(i, b.total, width=0.6, color="0.6")
        return
    up = down = 0.0
    for name, value in b.terms.items():
        bottom = up if value >= 0 else down
        ax.bar(i, value, width=0.6, bottom=bottom, color=colours[name],
               label=name if name not in drawn else None)
        drawn.add(name)
        if value >= 0:
            up += value
        else:
            down += value
