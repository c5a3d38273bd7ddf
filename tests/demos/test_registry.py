"""The demo registry: `lowerbound demo` lists every registered demo, a new demo is one module plus one
registration, and every demo takes --seed, -o, --json and --no-progress."""

import argparse
import json
from dataclasses import dataclass

import pytest

from lowerbound.cli import main
from lowerbound.errors import UserError
from lowerbound.train.demos import registry


def test_listing_names_every_demo_with_one_line(capsys):
    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == registry.names()
    assert all(len(line) <= 110 for line in lines)


@dataclass
class _EchoConfig:
    reps: int = 3
    scale: float = 1.5
    seed: int = 0


def _echo_options(parser):
    registry.add_option(parser, _EchoConfig, "reps", "repetitions")


def test_a_registered_demo_gets_its_options_and_the_common_ones(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(registry, "_DEMOS", dict(registry._DEMOS))
    monkeypatch.setattr(registry, "_MODULES", {**registry._MODULES, "echo": "nowhere"})
    seen = {}

    @registry.register("echo", _EchoConfig, "repeat a seed", options=_echo_options)
    def run_echo(cfg, plot, *, progress=True, out=None):
        seen.update(cfg=cfg, plot=plot, progress=progress)
        print("the explanation", file=out)
        return {"reps": cfg.reps, "seed": cfg.seed}

    png = str(tmp_path / "e.png")
    assert main(["demo", "echo", "--reps", "7", "--seed", "4", "-o", png, "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"reps": 7, "seed": 4}  # stdout is the JSON alone
    assert "the explanation" in captured.err
    # fields not on the command line keep the config's default
    assert seen == {"cfg": _EchoConfig(reps=7, scale=1.5, seed=4), "plot": png, "progress": False}


def test_add_option_takes_type_and_default_from_the_config():
    parser = argparse.ArgumentParser()
    registry.add_option(parser, _EchoConfig, "scale", "a scale")
    assert parser.parse_args([]).scale == 1.5
    assert parser.parse_args(["--scale", "2"]).scale == 2.0


def test_a_demo_without_seed_is_refused_and_an_unknown_name_is_one_sentence():
    @dataclass
    class NoSeed:
        steps: int = 1

    with pytest.raises(TypeError, match="seed"):
        registry.register("bad", NoSeed, "no seed", options=lambda p: None)
    with pytest.raises(UserError, match="Unknown demo 'nope'"):
        registry.get("nope")


def test_json_is_strict_with_nulls_for_non_finite_numbers():
    result = {"slope": float("nan"), "rows": [1.0, float("inf")], "path": registry.Path("a.png")}
    text = registry.to_json(result)
    assert json.loads(text) == {"slope": None, "rows": [1.0, None], "path": "a.png"}
