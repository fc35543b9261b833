"""How many cores this process may really use, and math threads that share them politely.

On a machine whose cores are shared, OpenMP's default active waiting makes idle torch threads
spin for the cores other processes need: ``train --epochs 3`` took 101-123 s with the defaults
and 21-22 s with ``OMP_WAIT_POLICY=PASSIVE`` on the same 2-core machine (issue 16).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = Path("/sys/fs/cgroup/cpu.max")
    try:
        limit, period = quota.read_text().split()[:2]
        if limit != "max":
            cores = min(cores, max(1, math.ceil(int(limit) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def share_cores_politely(environ: dict | None = None) -> bool:
    """Before torch is imported: passive OpenMP waiting and one math thread per available core,
    unless the user set ``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` themselves.

    Returns True when the thread count was the user's (a launcher of several processes then
    keeps it; otherwise it divides the cores among them).
    """
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    users = "OMP_NUM_THREADS" in env
    env.setdefault("OMP_NUM_THREADS", str(available_cores()))
    env.setdefault("SEPCLR_THREADS_FROM_USER", "1" if users else "0")
    return users
