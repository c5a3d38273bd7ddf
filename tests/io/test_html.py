"""The self-contained page: pictures inlined byte for byte, text escaped, sort keys as written."""

import base64
import re

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.io import html
from lowerbound.io.images import save_grid


def test_pictures_are_inlined_byte_for_byte_and_text_is_escaped(tmp_path):
    png = save_grid(tmp_path / "g.png", torch.randint(0, 17, (4, 1, 8, 8)), 17)
    page = html.Page(title="a <b> & c", headers=["model", "value"],
                     rows=[[html.Cell("<script>x</script>", "x"), html.Cell("2.5", 2.5)],
                           ["plain", html.Cell("-", None)]],
                     figures=[("bars", png)], gallery=[("vae", png)])
    text = html.write(tmp_path / "p.html", page).read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 2 and all(base64.b64decode(u) == png.read_bytes() for u in uris)
    assert "<script>x</script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert "<title>a &lt;b&gt; &amp; c</title>" in text
    assert '<td class="num" data-sort="2.5">2.5</td>' in text and '<td data-sort="">-</td>' in text
    assert '<td data-sort="plain">plain</td>' in text
    assert text.count("<script>") == 1  # only the sorting script


def test_non_finite_sort_keys_sort_last_and_bad_input_is_refused(tmp_path):
    assert 'data-sort=""' in html.render(html.Page("t", ["v"], [[html.Cell("inf", float("inf"))]]))
    with pytest.raises(UserError, match="2 cells for 1 columns"):
        html.render(html.Page("t", ["v"], [["a", "b"]]))
    (tmp_path / "x.png").write_text("not a png")
    with pytest.raises(UserError, match="not a PNG"):
        html.data_uri(tmp_path / "x.png")
