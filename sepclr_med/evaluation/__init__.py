"""Evaluation of latent spaces: cross-validated linear probes."""

from sepclr_med.evaluation.probes import probe_classification, probe_regression

__all__ = ["probe_classification", "probe_regression"]
