"""Figures of explanations: glass brains and slices (nilearn), region bars, score scatters.

File names are predictable: ``<stem>_glass.png``, ``<stem>_slices.png``, ``<stem>_regions.png``,
``scatter_<score>_<variable>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.atomic import atomic_path


def pyplot():
    """matplotlib's pyplot on the backend the session already has: the library never switches
    it (a notebook keeps its inline backend; the command line chooses Agg, ``cli/main.py``).
    Every figure made here is closed after it is written."""
    import matplotlib.pyplot as plt

    return plt


def display_threshold(data: np.ndarray) -> float:
    """Overlay threshold of a signed map: the 90th percentile of its non-zero |values|."""
    nonzero = np.abs(data[data != 0])
    return float(np.percentile(nonzero, 90)) if nonzero.size else 0.0


def brain_figures(img, out_dir: Path, stem: str, title: str) -> list[Path]:
    """Glass brain and orthogonal slices of a signed map (threshold: 90th percentile of |map|)."""
    from nilearn import plotting

    plt = pyplot()
    threshold = display_threshold(np.asarray(img.dataobj))
    paths = [out_dir / f"{stem}_glass.png", out_dir / f"{stem}_slices.png"]
    display = plotting.plot_glass_brain(img, threshold=threshold, plot_abs=False, colorbar=True, title=title)
    with atomic_path(paths[0]) as tmp:  # a kill never leaves a 0-byte PNG under the final name
        display.savefig(str(tmp), dpi=90)
    display.close()
    display = plotting.plot_stat_map(
        img, threshold=threshold, display_mode="ortho", title=title, colorbar=True, draw_cross=False
    )
    with atomic_path(paths[1]) as tmp:
        display.savefig(str(tmp), dpi=90)
    display.close()
    plt.close("all")
    return paths


def region_bars(table: pd.DataFrame, path: Path, title: str, value: str = "mean_attribution", top: int = 15) -> Path:
    """Horizontal bar chart of the top regions."""
    plt = pyplot()
    head = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(head) + 1.2))
    colors = ["#c0392b" if v > 0 else "#2c7fb8" for v in head[value]]
    ax.barh(head["name"], head[value], color=colors)
    ax.set_xlabel(value.replace("_", " "))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path


def score_scatter(x: np.ndarray, y: np.ndarray, path: Path, xlabel: str, ylabel: str) -> Path:
    """Scatter plot with a least-squares line."""
    plt = pyplot()
    keep = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(4, 3.2))
    ax.scatter(x[keep], y[keep], s=12, alpha=0.7)
    if keep.sum() > 2:
        slope, intercept = np.polyfit(x[keep], y[keep], 1)
        grid = np.linspace(x[keep].min(), x[keep].max(), 50)
        ax.plot(grid, slope * grid + intercept, color="black", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
