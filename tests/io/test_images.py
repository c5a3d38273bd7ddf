"""PNG grids read back pixel for pixel; scatter plots written; failures leave nothing behind."""

import numpy as np
import pytest
import torch
from PIL import Image

from lowerbound.errors import UserError
from lowerbound.io.images import MIN_TILE, PAD, save_grid, save_scatter


def _tiles(png, n, h, w, nrow):
    """Undo save_grid's layout: read the PNG, downsample by its scale, cut out the n tiles."""
    img = np.asarray(Image.open(png))
    img = img[..., None] if img.ndim == 2 else img
    scale = max(1, -(-MIN_TILE // h))
    small = img[::scale, ::scale]
    tiles = []
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = PAD + r * (h + PAD), PAD + q * (w + PAD)
        tiles.append(small[top:top + h, left:left + w].transpose(2, 0, 1))
    return np.stack(tiles), img.shape


def test_grey_grid_round_trip(tmp_path):
    levels = 17
    x = torch.randint(0, levels, (10, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    path = save_grid(tmp_path / "g.png", x, levels)
    tiles, shape = _tiles(path, 10, 8, 8, nrow=4)  # ceil(sqrt(10)) = 4 per row
    expected = np.round(x.numpy() * 255 / (levels - 1)).astype(np.uint8)
    assert np.array_equal(tiles, expected)
    assert shape[0] == 8 * (3 * (8 + PAD) + PAD)  # 3 rows of tiles, each upscaled x8
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temporary file left


def test_colour_grid_with_nrow(tmp_path):
    x = torch.randint(0, 256, (5, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    path = save_grid(tmp_path / "c.png", x, 256, nrow=5)
    tiles, shape = _tiles(path, 5, 32, 32, nrow=5)
    assert np.array_equal(tiles, x.numpy().astype(np.uint8)) and shape[2] == 3


def test_binary_levels_map_to_black_and_white(tmp_path):
    x = torch.tensor([[[[0, 1], [1, 0]]]])
    tiles, _ = _tiles(save_grid(tmp_path / "b.png", x, 2), 1, 2, 2, nrow=1)
    assert np.array_equal(tiles[0, 0], [[0, 255], [255, 0]])


@pytest.mark.parametrize("images, levels, message", [
    (torch.zeros(2, 2, 8, 8, dtype=torch.long), 17, r"shape \[N, C, H, W\] with C = 1 or 3"),
    (torch.full((2, 1, 8, 8), 17), 17, "outside the levels 0..16"),
    (torch.full((2, 1, 8, 8), 0.5), 17, "fractional or non-finite"),
    (torch.zeros(0, 1, 8, 8, dtype=torch.long), 17, "no images"),
])
def test_bad_images_write_nothing(tmp_path, images, levels, message):
    with pytest.raises(UserError, match=message):
        save_grid(tmp_path / "x.png", images, levels)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    save_grid(path, torch.zeros(1, 1, 4, 4, dtype=torch.long), 2)
    before = path.read_bytes()

    def broken(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(UserError, match="Could not write .*keep.png: disk full"):
        save_grid(path, torch.ones(1, 1, 4, 4, dtype=torch.long), 2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_scatter(tmp_path):
    pts = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    pts[0, 0] = float("inf")  # dropped, not fatal
    path = save_scatter(tmp_path / "s.png", pts, title="samples", reference=pts * 2)
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (500, 500)
    with pytest.raises(UserError, match=r"shape \[N, 2\]"):
        save_scatter(tmp_path / "t.png", torch.zeros(5, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]
