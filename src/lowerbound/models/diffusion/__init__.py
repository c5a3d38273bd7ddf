"""Diffusion models trained and scored by their variational bound.

Diffusion: discrete time, the DDPM bound (Ho et al. 2020; Nichol & Dhariwal 2021), ddpm.py.
VDM: continuous time, the VDM bound (Kingma et al. 2021), vdm.py (imported on first use).
"""

from __future__ import annotations

from .config import DiffusionConfig  # registers the "diffusion" family
from .ddpm import Diffusion
from .schedule import Schedule

__all__ = ["Diffusion", "DiffusionConfig", "Schedule", "VDM"]


def __getattr__(name: str):
    if name == "VDM":
        from .vdm import VDM

        return VDM
    raise AttributeError(name)
