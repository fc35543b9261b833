"""Evaluation of latent spaces: cross-validated probes, label-free checks, the separation table."""

from sepclr_med.evaluation.evaluate import evaluate_latents
from sepclr_med.evaluation.probes import probe_classification, probe_regression, probe_regression_scores

__all__ = ["evaluate_latents", "probe_classification", "probe_regression", "probe_regression_scores"]
