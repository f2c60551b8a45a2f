"""``generate.task: export``: the generator as a file anyone can load with plain Keras.

Writes ``generator.keras`` (Keras' own format: architecture and weights, built only from
Keras' built-in layers, so ``keras.models.load_model`` needs nothing from this project) and
``generator.json``: what to feed it and what it returns — the latent size and distribution,
the condition (class names, or attribute names and each class's typical attribute row), the
image size and pixel range. The weights are those of the sampler's checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jobs.core.files import atomic_path, atomic_write_json

HOW_TO = ("import keras, json; g = keras.models.load_model('generator.keras'); "
          "info = json.load(open('generator.json')); images = g([z, condition]) "
          "# z: (N, latent_dim) float32 drawn as info['latent']; images in [-1, 1]")
UNIFORM_RANGES = {"uniform": [-1.0, 1.0], "unit_uniform": [0.0, 1.0],
                  "stratified": [-3.0, 3.0]}


def describe(sampler) -> dict:
    """What the exported generator needs and returns, as plain JSON."""
    spec, cond = sampler.spec, sampler.conditioning
    dist = spec.latent.distribution
    latent = {"dim": spec.model.latent_dim, "distribution": "normal" if dist == "normal"
              else "uniform", "range": UNIFORM_RANGES.get(dist), "trained_with": dist}
    condition: dict = {"kind": cond.kind}
    if cond.kind == "label":
        condition.update(dtype="int32", shape=[], class_names=cond.class_names,
                         class_probabilities=[float(p) for p in cond.class_probs])
    elif cond.kind == "attributes":
        condition.update(dtype="float32", shape=[cond.num_attributes],
                         attribute_names=cond.attribute_names,
                         class_prototypes={name: row.astype(int).tolist() for name, row in
                                           zip(cond.class_names, cond.prototypes)})
    else:
        condition.update(dtype="int32", shape=[], note="unconditional: pass zeros")
    size, _, channels = cond.image_shape
    return {"format": "facegan-hpc generator 1", "model": spec.model.name,
            "inputs": ["z", "condition"], "latent": latent, "condition": condition,
            "output": {"shape": [size, size, channels], "range": [-1.0, 1.0],
                       "to_uint8": "clip((x + 1) * 127.5, 0, 255)"},
            "checkpoint": sampler.checkpoint, "how_to": HOW_TO}


def export(sampler, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    model_path, info_path = out / "generator.keras", out / "generator.json"
    with atomic_path(model_path) as tmp:
        keras_tmp = tmp.with_name(tmp.name + ".keras")  # Keras insists on the suffix
        sampler.G.save(keras_tmp)
        keras_tmp.replace(tmp)
    info = describe(sampler)
    atomic_write_json(info_path, info)
    z = np.zeros((1, sampler.spec.model.latent_dim), np.float32)
    probe = sampler.raw(z, sampler.conditioning.for_labels([0]))
    return {"generator": str(model_path), "description": str(info_path),
            "probe_output_shape": list(probe.shape)}
