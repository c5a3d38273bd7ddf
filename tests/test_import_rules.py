"""The rooms of design.md: imports flow downward, a room never imports one above it."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lowerbound"

# room -> rooms of ours it may import.  Leaf utilities (errors, _config) may be imported by all.
ALLOWED = {
    "prob": set(),
    "nets": set(),
    "data": {"prob"},
    "models": {"prob", "nets"},
    "sample": {"prob", "nets", "models"},
    "adapters": {"prob", "nets", "models"},
    "io": set(),
    "train": {"prob", "nets", "models", "sample", "data", "io", "eval"},
    "eval": {"prob", "nets", "models", "sample", "data", "io"},
    "compare": {"prob", "nets", "models", "sample", "data", "io", "train", "eval"},
    "cli": {"prob", "nets", "models", "sample", "data", "io", "train", "eval", "compare", "adapters"},
}
LEAVES = {"errors", "_config", "__init__", "__main__"}
ROOMS = set(ALLOWED)


def _room_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = list(path.relative_to(SRC.parent).with_suffix("").parts)[:-1]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        for n in names:
            parts = n.split(".")
            if parts[0] == "lowerbound" and len(parts) > 1:
                found.add(parts[1])
    return found


FILES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_rooms_import_downward(path):
    room = _room_of(path)
    if room in LEAVES:
        # the package's front door may re-export anything; leaves import only leaves
        if path.stem in ("errors", "_config"):
            assert _imported_rooms(path) <= LEAVES, f"{path.name} must stay a leaf"
        return
    assert room in ROOMS, f"{path} is outside the rooms of design.md"
    bad = {r for r in _imported_rooms(path) if r in ROOMS and r != room and r not in ALLOWED[room]}
    assert not bad, f"{path.relative_to(SRC)} ({room}) imports {sorted(bad)}, above it"


def test_rule_checker_catches_a_violation(tmp_path):
    fake = SRC / "prob" / "_fake_for_test.py"
    try:
        fake.write_text("from ..train import loop\n")
        assert _imported_rooms(fake) == {"train"}
    finally:
        fake.unlink()
