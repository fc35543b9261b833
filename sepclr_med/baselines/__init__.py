"""Baselines trained on the same cohort and probed the same way as SepCLR (a registry)."""

from sepclr_med.baselines.registry import METHODS, fit_and_embed

__all__ = ["METHODS", "fit_and_embed"]
