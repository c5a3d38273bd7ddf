"""Shared by the flow benchmarks: one run through the project's runtime (lowerbound.train.run.train,
the same loop as `lowerbound train`: best weights by validation, EMA, scoring of every split), and the
machine's state (load average, CPU model) printed beside every number, since the machine is shared.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, the torch threads used and the load average (1, 5, 15 minutes)."""
    import torch

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def train_flow(data: str, model: dict, minutes: float, loop: dict | None = None,
               run_root: str | None = None) -> tuple[dict, Path]:
    """Train family `flow` on `data` for `minutes` through the runtime; returns (the run's final
    result dict, its run directory)."""
    from lowerbound.train.run import configure, train

    root = Path(run_root or tempfile.mkdtemp(prefix="flow-bench-"))
    run_dir = root / f"{data.replace(':', '-')}-{time.strftime('%H%M%S')}"
    layer = {"data": data, "minutes": minutes, "steps": 10**9, "patience": 0, "num_samples": 16,
             "model": model, **(loop or {})}
    cfg, run_dir = configure("flow", [layer], [], str(run_dir), False)
    start = time.perf_counter()
    result = train(cfg, run_dir, progress=False)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["loop"] = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "family", "data")}
    return result, run_dir


def write_json(path: Path, key: str, entry: dict) -> dict:
    """Merge `entry` under `key` into the JSON file at path (each run of a benchmark adds its row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = entry
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return data
