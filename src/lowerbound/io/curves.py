"""Line plots of named series against a shared x axis, written as a PNG (training curves, the VI demo).

matplotlib is imported lazily and drawn on its non-interactive Agg canvas (no pyplot), so importing this
module costs nothing and plotting works on a machine without a display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..errors import UserError


def _check(x: Sequence[float], series: dict[str, Sequence[float]], logy: bool) -> None:
    if len(x) == 0:
        raise UserError("plot_curves needs at least one x value.")
    if not series:
        raise UserError("plot_curves needs at least one named series.")
    for name, ys in series.items():
        if len(ys) != len(x):
            raise UserError(f"series {name!r} has {len(ys)} values but x has {len(x)}.")
        if logy and any(not (float(y) > 0.0) for y in ys if not math.isnan(float(y))):
            raise UserError(f"series {name!r} has values <= 0, which a logarithmic y axis cannot show.")


def plot_curves(
    path: str | Path,
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    dpi: int = 120,
) -> Path:
    """Draw each series (name -> values, one per x) as a line with a legend; write a PNG to `path`.

    Values may be floats or 0-d tensors; nan values leave gaps.  Parent folders are created.
    Returns the path written.
    """
    _check(x, series, logy)
    return plot_xy(path, {name: (x, ys) for name, ys in series.items()}, xlabel=xlabel, ylabel=ylabel,
                   title=title, logy=logy, dpi=dpi)


def plot_xy(
    path: str | Path,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    dpi: int = 120,
) -> Path:
    """Like plot_curves, but each series brings its own x values: name -> (xs, ys), e.g. validation
    curves of several runs against their own wall-clock times."""
    if not series:
        raise UserError("plot_xy needs at least one named series.")
    for name, (xs, ys) in series.items():
        _check(xs, {name: ys}, logy)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"the plot path must end in .png, got {str(path)!r}.")
    # a bare Figure on the Agg canvas: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, (xs, ys) in series.items():
        ax.plot([float(v) for v in xs], [float(v) for v in ys], label=name, linewidth=1.6,
                marker="." if len(xs) < 40 else None)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
