"""The pipeline's stages: their names and numbers, the masks that pick them, their lifecycle,
and which CPU runs which.

Standard library only: the tuning profile (and so ``check-host``) reads it without numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

STAGES = ("feed", "engine", "gateway")
N_STAGES = len(STAGES)
FEED, ENGINE, GATEWAY = range(N_STAGES)
# A process runs a set of stages, named by a mask: bit ``1 << stage`` for each.
STAGE_BITS = tuple(1 << stage for stage in range(N_STAGES))
FEED_BIT, ENGINE_BIT, GATEWAY_BIT = STAGE_BITS
ALL_STAGES = sum(STAGE_BITS)


def stage_cores(workers: Sequence[int]) -> dict[str, int]:
    """Which of ``workers`` (CPUs free for busy polling) runs each stage: one CPU per stage
    while they last; with two, the engine and gateway share one (they exchange orders and
    fills); with one, all three share it. Stages on one CPU are fused into one process."""
    cpus = list(workers)
    if not cpus:
        raise ValueError("no CPU to run the stages on")
    if len(cpus) >= N_STAGES:
        feed, engine, gateway = cpus[:N_STAGES]
    elif len(cpus) == 2:
        feed, engine, gateway = cpus[0], cpus[1], cpus[1]
    else:
        feed = engine = gateway = cpus[0]
    return dict(zip(STAGES, (feed, engine, gateway), strict=True))


# Stage lifecycle, published in each section's STATE word
STATE_NAMES = ("absent", "starting", "warming", "warm", "running", "draining", "stopped", "failed")
S_ABSENT, S_STARTING, S_WARMING, S_WARM, S_RUNNING, S_DRAINING, S_STOPPED, S_FAILED = range(8)
