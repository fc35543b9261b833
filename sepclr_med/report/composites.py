"""Control composites: the reference volumes reports draw expected-gradient baselines from.

Each composite is the mean of at least ``size`` training controls (a seeded random partition of
*all* of them into ``min(max_count, n // size)`` groups), so that no single person's scan is
stored with a model (``sepclr-med export``). Every control is in a group: the controls' mean
image, which travels too, is then a weighted mean of the composites, and no left-over subject can
be recovered by subtracting them from it. Expected gradients over
composites sit between integrated gradients from the controls' mean (one baseline) and expected
gradients over individual scans (``explain``), closer to the latter as ``size`` falls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

COMPOSITE_SIZE = 5
MAX_COMPOSITES = 32


def composite_groups(n_controls: int, size: int = COMPOSITE_SIZE, max_count: int = MAX_COMPOSITES, seed: int = 0):
    """A seeded random partition of all ``n_controls`` positions into ``min(max_count, n // size)``
    groups of at least ``size`` (sizes differ by at most one); no group when ``n < size``."""
    count = min(max_count, n_controls // size)
    if count == 0:
        return []
    order = np.random.default_rng(seed).permutation(n_controls)
    return [np.sort(part) for part in np.array_split(order, count)]


def control_composites(
    volume_of: Callable[[int], np.ndarray],
    n_controls: int,
    *,
    size: int = COMPOSITE_SIZE,
    max_count: int = MAX_COMPOSITES,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The composites, ``(k, X, Y, Z)`` float32 holding float16-exact values (stored as float16),
    and their sizes.

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
    sizes : ndarray (k,)
        How many controls each composite averages.
    """
    composites, groups = [], composite_groups(n_controls, size, max_count, seed)
    for group in groups:
        total = None
        for i in group:
            v = np.asarray(volume_of(int(i)), dtype=np.float64)
            total = v if total is None else total + v
        assert total is not None
        composites.append((total / len(group)).astype(np.float16).astype(np.float32))
    sizes = np.array([len(g) for g in groups], dtype=int)
    return (np.stack(composites) if composites else np.zeros((0,), np.float32)), sizes
