"""Pictures of data and samples: PNG grids of integer-level images, and scatter plots of 2-D points.

    save_grid(path, images [N, C, H, W] levels 0..K-1, levels, nrow=None)   pillow
    save_scatter(path, points [N, 2], title=None, reference=None)           matplotlib (Agg)

Both write atomically (a temporary file in the same folder, then os.replace), so a reader never
sees half a picture and a failure leaves nothing behind.  Grids are upscaled by whole pixels
(nearest neighbour) so that each tile is at least 64 pixels tall: 8x8 digits become 64x64.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .files import atomic_path

MIN_TILE = 64  # pixels: tiles smaller than this are upscaled by an integer factor
PAD = 2  # pixels of background between tiles, before upscaling


def to_uint8(images: torch.Tensor | np.ndarray, levels: int) -> np.ndarray:
    """Integer levels 0..K-1 -> 0..255 (level k -> round(255 k / (K - 1))), [N, C, H, W] uint8."""
    x = torch.as_tensor(images).detach().cpu()
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"Images for a grid must have shape [N, C, H, W] with C = 1 or 3, "
                        f"got {tuple(x.shape)}.")
    if levels < 2:
        raise UserError(f"Images need at least 2 levels, got {levels}.")
    if x.is_floating_point():
        if not torch.isfinite(x).all() or not (x == x.round()).all():
            raise UserError("Images for a grid must hold integer levels, got fractional or "
                            "non-finite values.")
    if len(x) and (x.min() < 0 or x.max() > levels - 1):
        raise UserError(f"Images hold values from {x.min().item()} to {x.max().item()}, outside "
                        f"the levels 0..{levels - 1}.")
    scaled = torch.round(x.double() * (255.0 / (levels - 1)))
    return scaled.to(torch.uint8).numpy()


def grid_array(images: np.ndarray, nrow: int | None = None) -> np.ndarray:
    """Tile [N, C, H, W] uint8 into one [rows*(H+PAD)+PAD, cols*(W+PAD)+PAD, C] array, nrow per row."""
    n, c, h, w = images.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    canvas = np.full((rows * (h + PAD) + PAD, cols * (w + PAD) + PAD, c), 128, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = PAD + r * (h + PAD), PAD + q * (w + PAD)
        canvas[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return canvas


def save_grid(path: str | Path, images, levels: int, nrow: int | None = None) -> Path:
    """Write a PNG grid of integer-level images [N, C, H, W] (C = 1 or 3), nrow tiles per row.

    Each tile is upscaled by an integer factor to at least MIN_TILE pixels tall.  Returns the path.
    """
    from PIL import Image

    if nrow is not None and nrow < 1:
        raise UserError(f"nrow must be a positive number of tiles per row, got {nrow}.")
    pixels = to_uint8(images, levels)
    if len(pixels) == 0:
        raise UserError("There are no images to draw.")
    scale = max(1, math.ceil(MIN_TILE / pixels.shape[2]))
    canvas = grid_array(pixels, nrow).repeat(scale, axis=0).repeat(scale, axis=1)
    mode = "L" if canvas.shape[2] == 1 else "RGB"
    image = Image.fromarray(canvas[..., 0] if mode == "L" else canvas, mode=mode)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_scatter(path: str | Path, points, title: str | None = None, reference=None,
                 limits: tuple[float, float] | None = None) -> Path:
    """Write a PNG scatter plot of 2-D points [N, 2]; `reference` [M, 2] (e.g. the data) drawn beneath
    in grey.  `limits` fixes both axes to (lo, hi); by default they fit all points.  Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts, dropped = _points(points, "points")
    if dropped:  # say so on the picture rather than hide it
        title = f"{title or ''} ({dropped} non-finite points not drawn)".strip()
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    size = max(0.5, min(8.0, 3000.0 / max(len(pts), 1)))
    if reference is not None:
        ref, _ = _points(reference, "reference")
        ax.scatter(ref[:, 0], ref[:, 1], s=size, c="0.75", linewidths=0, label="reference")
    ax.scatter(pts[:, 0], pts[:, 1], s=size, c="C0", linewidths=0, label="points")
    if reference is not None:
        ax.legend(loc="upper right", markerscale=max(1.0, 4.0 / size))
    if limits is not None:
        ax.set_xlim(*limits)
        ax.set_ylim(*limits)
    ax.set_aspect("equal", adjustable="datalim" if limits is None else "box")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _points(points, what: str) -> tuple[np.ndarray, int]:
    """The finite rows of an [N, 2] array, and how many were not finite."""
    pts = torch.as_tensor(points).detach().cpu().double().numpy()
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise UserError(f"The {what} of a scatter plot must have shape [N, 2], got {pts.shape}.")
    finite = np.isfinite(pts).all(axis=1)
    if not finite.any():
        raise UserError(f"The {what} of a scatter plot has no finite point to draw.")
    return pts[finite], int((~finite).sum())  # a sampler's rare inf must not sink the picture
