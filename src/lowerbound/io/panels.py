"""A figure of several panels, each a list of named series drawn as lines, points, bars or bands: the plots
of `lowerbound demo` (densities over p, errors on log-log axes, ELBO staircases).  One PNG per figure.

Each panel carries its own title, axis labels and legend, so the picture reads without the printed text.
matplotlib is imported lazily and drawn on its Agg canvas (no pyplot, no display), as in curves.py.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import UserError


class Kind(enum.Enum):
    LINE = "line"  # a solid line through the points
    DASHED = "dashed"  # a reference line: a truth, a closed form, a slope
    POINTS = "points"  # markers only
    STEPS = "steps"  # a staircase, the value held until the next x
    BARS = "bars"  # one bar per x (categorical panels pass x = 0, 1, ... and tick labels)
    BAND = "band"  # a shaded band between `lower` and `upper`


@dataclass
class Series:
    """label: legend entry; x, y: equal lengths; lower/upper: a band or error bars (POINTS) when given."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    kind: Kind = Kind.LINE
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    width: float = 0.8  # of bars, in x units: 0.4 with x offsets of +-0.2 puts two groups side by side

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise UserError(f"series {self.label!r} has {len(self.y)} y values for {len(self.x)} x values.")
        for name in ("lower", "upper"):
            bound = getattr(self, name)
            if bound is not None and len(bound) != len(self.x):
                raise UserError(f"series {self.label!r} has {len(bound)} {name} values for {len(self.x)} x.")
        if self.kind is Kind.BAND and (self.lower is None or self.upper is None):
            raise UserError(f"band {self.label!r} needs lower and upper values.")


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    logx: bool = False
    logy: bool = False
    xticklabels: list[str] | None = None  # names for x = 0, 1, ... (bar charts)
    notes: list[str] = field(default_factory=list)  # short lines written inside the panel, top left


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def _draw_series(ax, s: Series) -> None:
    x, y = _floats(s.x), _floats(s.y)
    if s.kind is Kind.BAND:
        ax.fill_between(x, _floats(s.lower), _floats(s.upper), alpha=0.25, label=s.label)
    elif s.kind is Kind.BARS:
        bars = ax.bar(x, y, width=s.width, label=s.label, alpha=0.8)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)  # the values, so small bars still read
    elif s.kind is Kind.POINTS and s.lower is not None:
        below = [yi - lo for yi, lo in zip(y, _floats(s.lower))]
        err = [below, [hi - yi for yi, hi in zip(y, _floats(s.upper))]]
        ax.errorbar(x, y, yerr=err, fmt="o", markersize=4, capsize=3, label=s.label)
    elif s.kind is Kind.POINTS:
        ax.plot(x, y, "o", markersize=4, label=s.label)
    elif s.kind is Kind.STEPS:
        ax.step(x, y, where="post", linewidth=1.6, label=s.label)
    else:
        style = "--" if s.kind is Kind.DASHED else "-"
        ax.plot(x, y, style, linewidth=1.6, label=s.label)


def _draw_panel(ax, panel: Panel) -> None:
    for s in panel.series:
        if panel.logy and any(not v > 0 for v in _floats(s.y) if not math.isnan(v)):
            raise UserError(f"series {s.label!r} has values <= 0, which a logarithmic y axis cannot show.")
        _draw_series(ax, s)
    if panel.logx:
        ax.set_xscale("log")
    if panel.logy:
        ax.set_yscale("log")
    if panel.xticklabels is not None:
        ax.set_xticks(range(len(panel.xticklabels)))
        ax.set_xticklabels(panel.xticklabels, fontsize=8)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.3)
    if any(s.label for s in panel.series):
        ax.legend(fontsize=7)
    if panel.notes:
        ax.text(0.02, 0.98, "\n".join(panel.notes), transform=ax.transAxes, va="top", ha="left", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})


def plot_panels(path: str | Path, panels: Sequence[Panel], *, title: str, columns: int = 2,
                dpi: int = 110) -> Path:
    """Draw the panels on a grid of `columns` columns under a figure title; write a PNG to `path`.

    Parent folders are created; returns the path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"the plot path must end in .png, got {str(path)!r}.")
    if not panels:
        raise UserError("plot_panels needs at least one panel.")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(5.6 * columns, 4.2 * rows))
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        _draw_panel(fig.add_subplot(rows, columns, i + 1), panel)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
