"""Progress inside one long bound: the estimator says how much work a call will do, then ticks it off.

A batch of the DDPM's full bound is (T - 1) net calls per example and the VDM's tight or ODE bound
minutes of work, so a bar that moves once per batch says nothing.  Inside `metered(report)` an
estimator calls `plan(units)` before it starts (all of the call's work, in any unit it counts: rows
of (example, timestep), draws of t, time of an ODE solve times examples) and `advance(units)` as
it goes; `report(fraction)` then hears the share of the call done, in [0, 1].  eval.likelihood
turns that into a bar over examples, so its total (the split's size) is known before the first
batch and its ETA is honest.

Outside `metered` (tests, training, progress off) plan and advance are one context-variable read
and return: no bar, no arithmetic, nothing that touches a tensor, so the numbers are the same with
or without progress (a test compares them bitwise).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

Report = Callable[[float], None]


class Meter:
    """The work of one metered call: units planned and done; reports done / planned (at most 1)."""

    def __init__(self, report: Report):
        self.report, self.planned, self.done = report, 0.0, 0.0

    def plan(self, units: float) -> None:
        self.planned += float(units)

    def advance(self, units: float) -> None:
        self.done += float(units)
        if self.planned > 0:
            self.report(min(1.0, self.done / self.planned))


_active: ContextVar[Meter | None] = ContextVar("lowerbound_work_meter", default=None)


@contextmanager
def metered(report: Report) -> Iterator[Meter]:
    """Within the block, plan/advance feed a new Meter that calls report(fraction done)."""
    meter = Meter(report)
    token = _active.set(meter)
    try:
        yield meter
    finally:
        _active.reset(token)


def plan(units: float) -> None:
    """Add `units` to the work the current metered call will do (nothing outside `metered`)."""
    meter = _active.get()
    if meter is not None:
        meter.plan(units)


def advance(units: float) -> None:
    """Count `units` of the planned work as done (nothing outside `metered`)."""
    meter = _active.get()
    if meter is not None:
        meter.advance(units)
