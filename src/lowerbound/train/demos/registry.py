"""Demos by name (style.md habit 5: extend by registration, not by an if-chain).

A demo is one module that registers its run function on import:

    @register("kl", KLDemoConfig, "one line for `lowerbound demo`", options=_options)
    def run_kl_demo(cfg, plot, *, progress=True, out=None) -> dict: ...

`cfg` is the demo's typed config, built from the command line; `plot` the PNG path (or None);
`out` the stream for the explanation; the returned dict is what `--json` prints.  `options(parser)`
declares the demo's own command-line options, each with `add_option`, which reads the default from
the config so the two cannot drift.  Every demo also gets `--seed`, `-o/--output PNG`, `--json` and
`--no-progress`.  Adding a demo: its module, and one line in `_MODULES` below.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from ...errors import UserError

# demo name -> module that registers it (imported when the demo is asked for, or listed)
_MODULES: dict[str, str] = {
    "vi": "lowerbound.train.demos.vi",
    "kl": "lowerbound.train.demos.kl",
    "mc": "lowerbound.train.demos.mc",
    "bayes": "lowerbound.train.demos.bayes",
    "em": "lowerbound.train.demos.em",
    "parzen": "lowerbound.train.demos.parzen",
}

Options = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Demo:
    name: str
    config_cls: type
    run: Callable[..., dict]
    summary: str
    options: Options


_DEMOS: dict[str, Demo] = {}


def register(name: str, config_cls: type, summary: str, *, options: Options):
    """Decorator: register `run(cfg, plot, *, progress, out) -> dict` as demo `name`."""
    if not any(f.name == "seed" for f in dataclasses.fields(config_cls)):
        raise TypeError(f"demo {name!r}: its config must have a seed field (every demo takes --seed)")

    def deco(run):
        _DEMOS[name] = Demo(name, config_cls, run, summary, options)
        return run

    return deco


def names() -> list[str]:
    """Every demo name, without importing any demo."""
    return sorted(set(_MODULES) | set(_DEMOS))


def get(name: str) -> Demo:
    if name not in _DEMOS and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _DEMOS:
        raise UserError(f"Unknown demo {name!r}; choose one of: {', '.join(names())}.")
    return _DEMOS[name]


def summaries() -> dict[str, str]:
    """name -> one-line summary, for every demo (imports them all)."""
    return {name: get(name).summary for name in names()}


def check_config(cfg, *, integers: tuple[str, ...] = (), positive: tuple[str, ...] = (),
                 finite: tuple[str, ...] = ()) -> None:
    """The checks every demo config makes in __post_init__: the named fields are positive integers,
    positive numbers or finite numbers, and seed is a non-negative integer; one sentence otherwise."""
    for name in integers:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}.")
    if isinstance(cfg.seed, bool) or not (isinstance(cfg.seed, int) and cfg.seed >= 0):
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed!r}.")
    for name in positive + finite:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{name.replace('_', '-')} must be a finite number, got {value!r}.")
        if name in positive and not value > 0:
            raise UserError(f"{name.replace('_', '-')} must be a positive number, got {value!r}.")


def begin(plot: str | Path | None, out: TextIO | None) -> TextIO:
    """At the start of a demo: refuse a plot path that is not a .png before any work; the stream to
    explain on (stdout unless given)."""
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise UserError(f"the plot path must end in .png, got {str(plot)!r}.")
    return sys.stdout if out is None else out


def write_plot(plot: str | Path | None, draw: Callable[[str | Path], Path], out: TextIO) -> str | None:
    """At the end of a demo: draw the plot to `plot` (unless None), say where, return the path."""
    if plot is None:
        return None
    path = draw(plot)
    print(f"wrote {path}", file=out)
    return str(path)


def to_json(result: dict) -> str:
    """A demo's numbers as strict JSON: non-finite floats (a slope from one point) become null, paths
    become strings."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(result), indent=1, default=str, allow_nan=False)


def _default(config_cls: type, field: str) -> Any:
    for f in dataclasses.fields(config_cls):
        if f.name == field:
            if f.default is not dataclasses.MISSING:
                return f.default
            break
    raise TypeError(f"{config_cls.__name__} has no field {field!r} with a default")


def add_option(parser: argparse.ArgumentParser, config_cls: type, field: str, help: str, *,
               choices=None) -> None:
    """Declare `--field-name` for a config field: its type and default are the field's default's."""
    default = _default(config_cls, field)
    kind = type(default) if not isinstance(default, bool) else None
    flag = "--" + field.replace("_", "-")
    if kind is None:  # a boolean switch flips its default
        parser.add_argument(flag, dest=field, action="store_false" if default else "store_true", help=help)
        return
    parser.add_argument(flag, dest=field, type=kind, default=default, choices=choices,
                        help=f"{help} (default {default})")


def declare(parser: argparse.ArgumentParser, name: str) -> None:
    """Add demo `name`'s own options and the ones every demo takes to `parser`."""
    demo = get(name)
    demo.options(parser)
    add_option(parser, demo.config_cls, "seed", "seed of every random draw")
    parser.add_argument("-o", "--output", default=f"{name}_demo.png",
                        help=f"PNG of the demo's plot (default {name}_demo.png)")
    parser.add_argument("--json", action="store_true",
                        help="print the numbers as JSON on stdout (the explanation goes to stderr)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(name: str, options: argparse.Namespace, *, out=None) -> dict:
    """Build demo `name`'s config from parsed options (fields not on the command line keep their
    defaults), run it and return its numbers."""
    demo = get(name)
    given = {f.name: getattr(options, f.name) for f in dataclasses.fields(demo.config_cls)
             if hasattr(options, f.name)}
    import torch  # here, not at the top: the CLI reads names() to build its parser, and needs no torch

    cfg = demo.config_cls(**given)
    # demos work on small tensors, where a second thread only adds contention (tens of times slower
    # on a busy machine, measured): run on one, and give the caller its setting back
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return demo.run(cfg, options.output, progress=not options.no_progress, out=out)
    finally:
        torch.set_num_threads(threads)
