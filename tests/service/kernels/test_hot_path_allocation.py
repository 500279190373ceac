"""No allocation on the hot path: numba's NRT statistics over a steady-state run.

The whole pipeline runs fused in one process on private segments: once warm, a long run of
``run_loop`` must not allocate (or free) a single NRT object. NRT statistics are only kept when
NUMBA_NRT_STATS is set before numba starts, so the measurement runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    import numpy as np
    from numba.core.runtime import rtsys
    from contracts import stats_layout as L
    from contracts.stages import ALL_STAGES
    from service.config import Config, ServiceConfig
    from service.kernels import stages as S
    from service.runtime.segments import create_segments
    from service.runtime.state import new_engine_state, new_feed_state, new_gateway_state

    base = Config()
    config = dataclasses.replace(
        base, service=dataclasses.replace(ServiceConfig(), shm_prefix=sys.argv[1]),
        feed=dataclasses.replace(base.feed, rate=0),
    )
    seg = create_segments(config)
    try:
        rings = S.Rings(seg.rings["md"], seg.rings["orders"], seg.rings["fills"])
        feed = new_feed_state(config)
        engine = new_engine_state(config, config.feed.instruments)
        gateway = new_gateway_state(config)
        local = np.zeros(L.STATS_WORDS, dtype=np.int64)
        args = (ALL_STAGES, rings, feed, engine, gateway, seg.control, seg.stats, local, 100_000)
        S.run_loop(*args, 10_000)  # warm: compile, first touches
        before = rtsys.get_allocation_stats()
        S.run_loop(*args, 2_000_000)
        after = rtsys.get_allocation_stats()
        print(json.dumps({
            "alloc": after.alloc - before.alloc, "free": after.free - before.free,
            "mi_alloc": after.mi_alloc - before.mi_alloc,
            "messages": int(local[L.MD_PROCESSED]), "orders": int(local[L.ORDERS_SENT]),
        }))
    finally:
        seg.unlink()
    """
)


def test_steady_state_run_allocates_nothing():
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    prefix = f"lltest-alloc-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, prefix], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["messages"] > 100_000, figures  # the run really did work...
    assert figures["orders"] > 0, figures
    assert figures["alloc"] == 0 and figures["free"] == 0 and figures["mi_alloc"] == 0, figures
