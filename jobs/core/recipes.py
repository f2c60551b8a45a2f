"""``train.recipe``: named sets of train fields that work together, as StyleGAN2-ADA's
``--cfg`` presets, so a user picks one word instead of tuning ten fields.

Why a table of dotted keys filled into the raw YAML before validation: a field the spec sets
always wins (the recipe fills only what the spec leaves out), sweeps and ``--set`` override a
recipe exactly as they override a spec, the saved ``train_spec.yaml`` holds the resolved values
(so a resumed or sampled run reads the same numbers), and the spec reference lists each recipe
field by field from this one table.
"""
from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # the fields' own defaults: the networks and losses of 2015-2017 (DCGAN, BatchNorm,
    # cross-entropy, lazy R1 when asked)
    "classic": {},
    # R3GAN's recipe at CPU size; its optimizer only where the spec names none (R3GAN's
    # beta_1 0 at 2e-4 learned slower in a few thousand steps: docs/training.md)
    "modern": {
        "model.architecture": "residual",
        "loss.name": "relativistic",
        "loss.r1_gamma": 0.05,
        "loss.r2_gamma": 0.05,
        "loss.r1_interval": 4,
        "optimizer.name": "adam",
        "optimizer.learning_rate": 2.0e-4,
        "optimizer.beta_1": 0.5,
        "ema.enabled": True,
    },
}

RECIPE_HELP = {
    "classic": "the fields' own defaults (DCGAN-era networks and losses)",
    "modern": "R3GAN's recipe: residual networks without normalization, the relativistic "
              "loss with R1 and R2 (gamma 0.05, every 4th step), Adam, and G's moving average",
}


def fill_recipe(section: Any, where: str) -> dict[str, str]:
    """Fill ``section`` (the raw ``train:`` mapping) with its recipe's values wherever the
    spec set none; returns {dotted key: recipe} of the keys it filled, so that a problem with
    one of them can say where the value came from. A malformed section is left to the
    validator, which names the key."""
    if not isinstance(section, dict):
        return {}
    name = section.get("recipe", "classic")
    if name not in RECIPES:
        return {}
    filled = {}
    for dotted, value in RECIPES[name].items():
        node, keys = section, dotted.split(".")
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if keys[-1] not in node:
                node[keys[-1]] = value.copy() if isinstance(value, list) else value
                filled[f"{where}.{dotted}"] = name
    return filled
