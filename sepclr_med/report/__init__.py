"""Clinicians' batch reports: one page per subject, an index, a summary table and PDFs."""
