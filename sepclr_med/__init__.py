"""sepclr-med: Contrastive Analysis (SepCLR) for 3D brain MRI.

The package tree reads as the data flow::

    cohort -> data -> models/losses -> training -> embed -> evaluation/explain -> report

Heavy dependencies (torch, monai, nilearn) are imported by the modules that need
them, never here, so ``import sepclr_med`` and the command line start instantly.
"""

from sepclr_med.errors import CohortError, Problem, SepclrError

__version__ = "0.1.0"
__all__ = ["CohortError", "Problem", "SepclrError", "__version__"]
