"""Cohort definitions shipped with sepclr-med: recipes of semi-synthetic cohorts (``*.toml``)."""
