"""Semi-synthetic brain MRI cohorts with known ground truth, on real anatomy."""

from sepclr_med.simulate.recipe import Recipe, load_recipe, list_recipes
from sepclr_med.simulate.generator import simulate_cohort

__all__ = ["Recipe", "load_recipe", "list_recipes", "simulate_cohort"]
