"""_config: typed dataclass configs refuse unknown keys and wrong types by name; dotted overrides."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from lowerbound._config import from_dict, set_dotted, to_dict
from lowerbound.errors import UserError


@dataclass
class Inner:
    width: int = 8
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    lr: float = 1e-3
    name: Optional[str] = None
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)


def test_round_trip_through_plain_dict():
    cfg = from_dict(Outer, {"lr": 1, "sizes": [3, 4], "inner": {"width": 16, "mode": "b"}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.sizes == (3, 4) and cfg.inner.mode == "b"
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, words",
    [
        ({"lrr": 1.0}, "Unknown option Outer.lrr"),
        ({"lr": "fast"}, "Outer.lr must be a number"),
        ({"lr": True}, "Outer.lr must be a number"),
        ({"inner": {"width": 2.5}}, "Outer.inner.width must be an integer"),
        ({"inner": {"mode": "c"}}, "Outer.inner.mode must be one of"),
        ({"inner": {"depth": 1}}, "Unknown option Outer.inner.depth"),
        ({"name": 3}, "Outer.name must be a string or null"),
    ],
)
def test_bad_options_are_refused_by_name(data, words):
    with pytest.raises(UserError, match=words.replace(".", r"\.")):
        from_dict(Outer, data)


def test_set_dotted_builds_nested_levels_and_refuses_a_leaf_as_group():
    d = {"model": {"depth": 1}, "lr": 0.1}
    set_dotted(d, "model.width", 32)
    set_dotted(d, "ema.decay", 0.99)
    assert d == {"model": {"depth": 1, "width": 32}, "lr": 0.1, "ema": {"decay": 0.99}}
    with pytest.raises(UserError, match="lr is not a group"):
        set_dotted(d, "lr.x", 1)
