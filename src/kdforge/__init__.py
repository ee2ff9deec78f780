"""kdforge: distil a large pre-trained language model into a small, fast student.

``kdforge run recipe.yaml`` on the command line is ``kdforge.run(load_recipe("recipe.yaml"))``
in Python.
"""

from kdforge.errors import KdforgeError
from kdforge.recipe import Recipe, load_recipe

__version__ = "0.1.0"


def run(recipe: Recipe, out: str | None = None, show: bool = True) -> dict:
    """Run a recipe's stages, evaluate teacher and student, export the student; returns the results."""
    from kdforge.engine.pipeline import run as run_pipeline

    return run_pipeline(recipe, out, show=show)


__all__ = ["KdforgeError", "Recipe", "__version__", "load_recipe", "run"]
