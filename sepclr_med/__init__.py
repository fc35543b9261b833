"""sepclr-med: Contrastive Analysis (SepCLR) for 3D brain MRI.

The package tree reads as the data flow::

    cohort -> data -> models/losses -> training -> embed -> evaluation/explain -> report

Heavy dependencies (torch, monai, nilearn) are imported by the modules that need
them, never here, so ``import sepclr_med`` and the command line start instantly. The public
model, :class:`sepclr_med.SepCLR`, and :func:`sepclr_med.read_cohort` are loaded on first use.
"""

from sepclr_med.errors import CohortError, Problem, SepclrError

__version__ = "0.1.0"
__all__ = ["CohortError", "Problem", "SepCLR", "SepclrError", "read_cohort", "__version__"]

_LAZY = {"SepCLR": "sepclr_med.estimator", "read_cohort": "sepclr_med.io.reading"}


def __getattr__(name: str):
    """``SepCLR`` and ``read_cohort``, imported on first use (they pull in torch and pandas)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sepclr_med' has no attribute {name!r}")
