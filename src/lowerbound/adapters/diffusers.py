"""A diffusers UNet and its DDPM / DDIM scheduler, scored by our DDPM bound on discrete data.

diffusers (von Platen et al., huggingface/diffusers) trains a UNet2DModel on images in [-1, 1] with
timesteps s = 0..T-1 and alphas_cumprod[s] = prod_{j<=s+1} (1 - beta_j): its s is our step i - 1
(denoiser.py, time convention "index").  From the scheduler we read
    betas            the schedule, exactly as the net was trained on it
    prediction_type  epsilon -> eps, sample -> x0, v_prediction -> v
    variance_type    fixed_small(_log) / fixed_large(_log) / learned_range (DDIM has none: fixed_small,
                     the variance of DDPMScheduler's default); "learned" is refused
    clip_sample      x0 clipped to [-1, 1] in every step, as diffusers' sampler does (clip_x0)
so the bound is that of the ancestral sampler DDPMScheduler.step runs, with our discretized decoder at
step 1 (diffusers' last step returns the mean) and our prior KL at T.  diffusers is imported only
where a folder is loaded; nothing here downloads (local_files_only).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import UserError
from ..models.diffusion import Diffusion
from ._optional import require
from .denoiser import from_denoiser

_PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
_VARIANCES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small", "fixed_large": "fixed_large",
              "fixed_large_log": "fixed_large", "learned_range": "learned_range"}


def _config(scheduler) -> dict:
    config = getattr(scheduler, "config", None)
    if config is None or getattr(scheduler, "betas", None) is None:
        raise UserError(f"A {type(scheduler).__name__} is not a diffusers scheduler with betas; give a "
                        "DDPMScheduler or DDIMScheduler.")
    return dict(config)


def _unet_shape(unet) -> tuple[int, int, int]:
    config = getattr(unet, "config", None)
    size = getattr(config, "sample_size", None) if config is not None else None
    channels = getattr(config, "in_channels", None) if config is not None else None
    if size is None or channels is None:
        raise UserError("This UNet has no config.sample_size and config.in_channels; pass shape=(C, H, W).")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(channels), int(h), int(w)


def from_diffusers(unet: nn.Module, scheduler, *, levels: int = 256, shape: tuple[int, ...] | None = None,
                   variance: str | None = None, clip_x0: bool | None = None, chunk: int = 4096) -> Diffusion:
    """Our `Diffusion` around `unet` (called as unet(x, s).sample, s = 0..T-1) with the scheduler's
    betas, prediction type, variance type and clipping (module docstring); variance / clip_x0 override
    the scheduler's.  levels: K of the data (256 for 8-bit images); shape: (C, H, W), by default the
    UNet's config (in_channels, sample_size, sample_size).  The UNet is put in eval mode (dropout off)."""
    config = _config(scheduler)
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in _PREDICTIONS:
        raise UserError(f"The scheduler's prediction_type {prediction!r} has no DDPM bound here; "
                        f"supported: {', '.join(_PREDICTIONS)}.")
    if variance is None:
        kind = config.get("variance_type") or "fixed_small"
        if kind not in _VARIANCES:
            raise UserError(f"The scheduler's variance_type {kind!r} has no DDPM bound here; supported: "
                            f"{', '.join(_VARIANCES)}.")
        variance = _VARIANCES[kind]
    if config.get("thresholding"):
        raise UserError("The scheduler uses dynamic thresholding, which this bound does not model; "
                        "set thresholding=False (or clip_sample) in its config.")
    if clip_x0 is None:
        clip_x0 = bool(config.get("clip_sample", False))
        if clip_x0 and float(config.get("clip_sample_range", 1.0)) != 1.0:
            raise UserError(f"The scheduler clips x0 to +-{config['clip_sample_range']}, not to the data's "
                            "[-1, 1]; pass clip_x0=True or False.")
    unet.eval()
    return from_denoiser(unet, shape=tuple(shape) if shape is not None else _unet_shape(unet), levels=levels,
                         betas=scheduler.betas, prediction=_PREDICTIONS[prediction], variance=variance,
                         time="index", clip_x0=clip_x0, chunk=chunk)


def _parts(folder: Path) -> tuple[Path, Path]:
    """(unet folder, scheduler folder) of a pipeline folder (unet/, scheduler/) or of a folder holding
    a UNet's config.json beside a scheduler_config.json."""
    for unet, sched in ((folder / "unet", folder / "scheduler"), (folder, folder)):
        if (unet / "config.json").is_file() and (sched / "scheduler_config.json").is_file():
            return unet, sched
    raise UserError(f"{folder} holds no diffusers model: expected unet/config.json and "
                    "scheduler/scheduler_config.json (a pipeline's save_pretrained), or config.json "
                    "beside scheduler_config.json.")


def _class(diffusers, path: Path, default: str):
    try:
        name = json.loads(path.read_text()).get("_class_name", default)
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot read {path}: {e}.") from None
    cls = getattr(diffusers, str(name), None)
    if cls is None:
        raise UserError(f"{path} names class {name!r}, which this diffusers does not have.")
    return cls


def load_diffusers(folder: str | Path, *, levels: int = 256, variance: str | None = None,
                   clip_x0: bool | None = None, chunk: int = 4096) -> Diffusion:
    """from_diffusers of the UNet and scheduler saved in `folder` by save_pretrained (a DDPMPipeline's
    folder, or a UNet's and a scheduler's saved into one folder); local files only, never the hub."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"The diffusers folder {folder} does not exist.")
    unet_dir, sched_dir = _parts(folder)
    diffusers = require("diffusers", "Scoring a diffusers model")
    unet_cls = _class(diffusers, unet_dir / "config.json", "UNet2DModel")
    sched_cls = _class(diffusers, sched_dir / "scheduler_config.json", "DDPMScheduler")
    if unet_cls.__name__ != "UNet2DModel":
        raise UserError(f"{unet_dir} holds a {unet_cls.__name__}; only an unconditional UNet2DModel "
                        "(called as unet(x, t)) can be scored.")
    try:
        unet = unet_cls.from_pretrained(unet_dir, local_files_only=True)
        scheduler = sched_cls.from_pretrained(sched_dir, local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise UserError(f"Cannot load the diffusers model in {folder}: {str(e).splitlines()[0]}") from None
    return from_diffusers(unet, scheduler, levels=levels, variance=variance, clip_x0=clip_x0, chunk=chunk)
