"""Semi-synthetic brain MRI cohorts with known ground truth, on real anatomy."""

from sepclr_med.simulate.generator import simulate_cohort
from sepclr_med.simulate.recipe import Recipe, family_recipes, list_recipes, load_recipe

__all__ = ["Recipe", "family_recipes", "load_recipe", "list_recipes", "simulate_cohort"]
