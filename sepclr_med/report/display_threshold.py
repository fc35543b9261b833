"""The display threshold of report maps, calibrated on held-out healthy controls.

A report map is smoothed, then shown in units of a threshold chosen so that a healthy control
(exchangeable with the calibration controls) has *any* voxel at or above it with probability at
most ``rate``: the threshold is the ``ceil((n + 1)(1 - rate))``-th smallest of the ``n``
calibration controls' peak values (split-conformal bound, exact for exchangeable subjects). With
too few controls for ``rate`` the largest peak is used and the bound is ``1 / (n + 1)``, which
the page states.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator

FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))
DISPLAY_VMAX = 3.0  # the colour scale of calibrated maps: 0 to 3 x the threshold on every page


class DisplayThreshold(BaseEstimator):
    """Smooth report maps and express them in units of a control-calibrated threshold.

    Parameters
    ----------
    rate : float
        Target share of healthy controls whose map lights up anywhere.
    fwhm_voxels : float
        Gaussian smoothing of every map before its peak is taken (in voxels; 0: none).

    Attributes
    ----------
    threshold_ : float
        The peak |smoothed map| at or above which a voxel is shown.
    peaks_ : ndarray
        The calibration controls' peak values, sorted.
    n_controls_ : int
    bound_ : float
        The guaranteed false-positive rate, ``1 - rank / (n + 1)`` (at most ``rate`` when
        ``n >= 1 / rate - 1``).
    """

    def __init__(self, rate: float = 0.05, fwhm_voxels: float = 2.0) -> None:
        self.rate = rate
        self.fwhm_voxels = fwhm_voxels

    def smooth(self, maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """``(n, X, Y, Z)`` maps smoothed (Gaussian, ``fwhm_voxels``), zero outside ``mask``."""
        maps = np.asarray(maps, dtype=np.float32)
        sigma = self.fwhm_voxels * FWHM_TO_SIGMA
        out = np.stack([ndimage.gaussian_filter(m, sigma, mode="constant") if sigma > 0 else m for m in maps])
        return out * mask if mask is not None else out

    def peaks(self, maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Each map's largest |value| after smoothing."""
        smoothed = self.smooth(maps, mask)
        return np.abs(smoothed).reshape(len(smoothed), -1).max(axis=1)

    def fit(self, control_maps: np.ndarray, mask: np.ndarray | None = None) -> DisplayThreshold:
        """Calibrate on ``(n, X, Y, Z)`` maps of held-out healthy controls (``n >= 1``)."""
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must lie in (0, 1), got {self.rate}")
        peaks = np.sort(self.peaks(control_maps, mask))
        n = len(peaks)
        if n == 0:
            raise ValueError("the display threshold needs at least one held-out control's map")
        rank = min(n, math.ceil((n + 1) * (1 - self.rate)))
        if peaks[rank - 1] <= 0:
            raise ValueError(f"the calibration maps of {n} held-out control(s) are zero everywhere")
        self.peaks_ = peaks
        self.n_controls_ = n
        self.threshold_ = float(peaks[rank - 1])
        self.bound_ = 1.0 - rank / (n + 1)
        return self

    def transform(self, maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Smoothed maps in units of the threshold (|value| >= 1 is shown)."""
        return self.smooth(maps, mask) / self.threshold_

    def lights_up(self, maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Whether each map has any voxel at or above the threshold."""
        return self.peaks(maps, mask) >= self.threshold_

    def stated_bound(self) -> float:
        """The bound in percent, rounded up to 0.1 (never stated lower than it is)."""
        return math.ceil(round(1000 * self.bound_, 6)) / 10

    def describe(self) -> str:
        """One sentence for the page: what a coloured voxel means."""
        return (
            f"coloured voxels reach the level that at most {self.stated_bound():g} % of healthy controls reach "
            f"anywhere in the brain (calibrated on {self.n_controls_} held-out control(s) of the training "
            f"cohort; maps smoothed {self.fwhm_voxels:g} voxels FWHM; colour scale in multiples of that level, "
            f"saturating at {DISPLAY_VMAX:g})"
        )
