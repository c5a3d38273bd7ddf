"""`TrainConfig`: every option of a run, typed, with defaults good for digits on a laptop CPU.

Built from layers of plain dicts (defaults < YAML file < command-line flags < `--set key=value`)
by `resolve`, which refuses unknown keys and wrong types by name (via _config.from_dict).  Model
options live in the `model:` section and are checked by the family's own config dataclass when
the model is built; data set options (`data_options:`, e.g. mnist's binarize or toy2d's n_train)
are passed to `lowerbound.data.load(data, **data_options)`, which checks them; loop options are
top-level keys.  config.json holds the resolved result with
a schema version, and a resumed run starts from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._config import from_dict, set_dotted, to_dict
from ..errors import UserError

SCHEMA = 1
SECTIONS = ("model", "data_options")  # mappings merged key by key across layers

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Schedule = Literal["constant", "cosine"]
FiniteCheck = Literal["logged", "every_step"]


@dataclass
class TrainConfig:
    """One run.  steps/minutes: stop at whichever comes first (minutes None = no time limit).
    batch_size is the global batch: split evenly over the processes of a distributed run.
    patience: stop after this many evaluations without a better validation bound (0 = never).
    ema_decay: 0 disables the average (the exported weights are then the trained ones).
    data_options: keyword options of the data set's loader, e.g. {"binarize": "dynamic"}.
    Speed (benchmarks/train_step_knobs.py measures each; none changes what is computed beyond float
    rounding): fused_adamw: torch's fused AdamW kernel where this torch and device have one (else
    foreach).  finite_check: when the loss terms and gradient norm are checked for NaN/inf, which is
    when the CPU waits for the device: "logged" at each metric row (log_every; a failure still names
    its first non-finite step, and no checkpoint or evaluation sees the weights), "every_step" after
    each step.  compile: torch.compile the model's net (eager, with a warning, where that fails).
    channels_last: 4-D weights (convolutions) in channels-last memory order."""

    family: str = ""
    data: str = "digits"
    data_options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    minutes: float | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Schedule = "constant"
    grad_clip: float = 10.0
    ema_decay: float = 0.995
    seed: int = 0
    valid_fraction: float = 0.1
    eval_every: int = 100
    eval_batch_size: int = 256
    patience: int = 10
    checkpoint_every: int = 500
    keep: int = 3
    log_every: int = 10
    num_samples: int = 64
    sample_every: int = -1  # steps between sample grids (at evaluations); 0 never, -1 auto (see loop)
    device: Device = "auto"
    precision: Precision = "fp32"
    fused_adamw: bool = True
    finite_check: FiniteCheck = "logged"
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every",
                    "keep", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"The option {name} must be at least 1, got {getattr(self, name)}.")
        for name in ("warmup_steps", "patience", "num_samples", "seed"):
            if getattr(self, name) < 0:
                raise UserError(f"The option {name} must not be negative, got {getattr(self, name)}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"The option lr must be a positive number, got {self.lr}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"The option ema_decay must be in [0, 1), got {self.ema_decay}.")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(f"The option valid_fraction must be in [0, 1), got {self.valid_fraction}.")
        if self.minutes is not None and not self.minutes > 0:
            raise UserError(f"The option minutes must be positive, got {self.minutes}.")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise UserError("The options grad_clip and weight_decay must not be negative.")

    def lr_at(self, step: int) -> float:
        """Learning rate for the update that takes the state from `step` to step + 1 (pure in step)."""
        lr = self.lr
        if self.warmup_steps and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        if self.schedule == "cosine":
            lr *= 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return lr

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **to_dict(self)}


def parse_value(text: str) -> Any:
    """A `--set` value typed the way YAML types it: 1e-3 -> float, 128 -> int, true -> bool, x -> str."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _looks_numeric(value):
        return float(value)  # YAML 1.1 reads "1e-3" as a string
    return value


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"The config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"The config file {path} is not text: byte {e.start} is not UTF-8.") from None
    except yaml.YAMLError as e:
        raise UserError(f"The config file {path} is not valid YAML ({str(e).splitlines()[0]}).") from None
    except RecursionError:
        raise UserError(f"The config file {path} nests too deeply to be a config.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"The config file {path} must be a mapping of options, not a {type(data).__name__}.")
    return _fix_numbers(data)


def _fix_numbers(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _fix_numbers(v) for k, v in d.items()}
    if isinstance(d, str) and _looks_numeric(d) and d.strip().lower() not in ("nan", "inf", "-inf"):
        return float(d)
    return d


def resolve(*layers: dict[str, Any], sets: list[str] = ()) -> TrainConfig:
    """Merge layers left to right (model sections merged key by key), apply `key=value` sets, check."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for k, v in (layer or {}).items():
            if v is None:
                continue
            if k in SECTIONS and isinstance(v, dict):
                merged.setdefault(k, {}).update(v)
            else:
                merged[k] = v
    merged.pop("schema", None)
    for item in sets:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"The override {item!r} must look like key=value, e.g. lr=1e-3.")
        set_dotted(merged, key.strip(), parse_value(text))
    for section in SECTIONS:
        if not isinstance(merged.get(section, {}), dict):
            raise UserError(f"The option {section} must be a mapping of options.")
    return from_dict(TrainConfig, merged, where="config")
