"""Recipes: `schema` reads and checks a recipe file; `runner` runs its stages in order."""

from edgecnn.recipe.runner import STAGE_FUNCS, run_recipe
from edgecnn.recipe.schema import SCHEMA, STAGES, Recipe, load_recipe, recipe_from_dict

__all__ = [
    "SCHEMA",
    "STAGES",
    "STAGE_FUNCS",
    "Recipe",
    "load_recipe",
    "recipe_from_dict",
    "run_recipe",
]
