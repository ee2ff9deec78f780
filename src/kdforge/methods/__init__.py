"""Distillation methods. Every module in this package registers its methods on import.

Adding a method: one new file here with a ``@register_method("name")`` class.
"""

import importlib
import pkgutil

from kdforge.methods.base import METHODS, Batch, Method, MethodArgs, ModelShape, Pair, register_method

_INFRASTRUCTURE = {
    "base",
    "contrastive",
    "layer_map",
    "multi_teacher",
    "predictions",
    "projection",
    "ranking",
    "reduce",
    "relations",
    "token_divergence",
}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Batch", "Method", "MethodArgs", "ModelShape", "Pair", "register_method"]
