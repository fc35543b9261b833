"""Control composites: the reference volumes reports draw expected-gradient baselines from.

Each composite is the mean of ``size`` training controls (a random partition, seeded), so that
no single person's scan is stored with a model (``sepclr-med export``). Expected gradients over
composites sit between integrated gradients from the controls' mean (one baseline) and expected
gradients over individual scans (``explain``), closer to the latter as ``size`` falls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

COMPOSITE_SIZE = 5
MAX_COMPOSITES = 32


def composite_groups(n_controls: int, size: int = COMPOSITE_SIZE, max_count: int = MAX_COMPOSITES, seed: int = 0):
    """Disjoint groups of ``size`` control positions (a seeded random partition; the remainder unused)."""
    count = min(max_count, n_controls // size)
    order = np.random.default_rng(seed).permutation(n_controls)
    return [np.sort(order[i * size : (i + 1) * size]) for i in range(count)]


def control_composites(
    volume_of: Callable[[int], np.ndarray],
    n_controls: int,
    *,
    size: int = COMPOSITE_SIZE,
    max_count: int = MAX_COMPOSITES,
    seed: int = 0,
) -> np.ndarray:
    """The composites, ``(k, X, Y, Z)`` float32 holding float16-exact values (stored as float16).

    Parameters
    ----------
    volume_of : callable
        ``volume_of(i)``: the ``i``-th control's preprocessed volume (``(X, Y, Z)``); read one
        group at a time, so that memory holds one composite and ``size`` volumes.
    n_controls : int
        Controls available.

    Returns
    -------
    numpy.ndarray
        ``(k, X, Y, Z)``, ``k = min(max_count, n_controls // size)`` (may be 0).
    """
    composites = []
    for group in composite_groups(n_controls, size, max_count, seed):
        total = None
        for i in group:
            v = np.asarray(volume_of(int(i)), dtype=np.float64)
            total = v if total is None else total + v
        assert total is not None
        composites.append((total / len(group)).astype(np.float16).astype(np.float32))
    return np.stack(composites) if composites else np.zeros((0,), np.float32)
