"""Fields almost no one sets live in their section's ``advanced:`` sub-section.

A spec writes ``train.guard.advanced.d_bounds``, and the schema keeps the field where the
code reads it, ``TrainSpec.guard.d_bounds``: this module lifts each section's ``advanced:``
mapping into the section before validation, so the rest of the loader, the code and the
resolved ``train_spec.yaml`` see one layout. Which fields are advanced is declared once, with
the field (``opt(..., advanced=True)``).

Specs, ``--set`` keys and sweep keys written before a field moved still load: the field is
read from its old place, with one warning naming the new one.
"""
from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass
from typing import Any

from jobs.core.fields import nearest

KEY = "advanced"


def is_advanced(field) -> bool:
    return bool(field.metadata.get("advanced"))


def advanced_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if is_advanced(f)]


Problem = tuple[str, str]  # (dotted key, why)


def lift(raw: Any, cls: type, where: str) -> tuple[list[Problem], list[str], set[str]]:
    """Move ``raw[advanced]`` into ``raw`` (a section's YAML mapping, in place), in every
    section below ``cls``. (problems, warnings, old places): a key given in both places or
    not advanced is a problem; an advanced field at its old place, a warning naming its new
    place, and its dotted key among the old places (a problem in it is named as written)."""
    if not isinstance(raw, dict):
        return [], [], set()  # the validator says what is wrong with it
    problems, warnings = [], []
    hints = typing.get_type_hints(cls)
    names = advanced_names(cls)
    old_names = {f.name: f.metadata["old_name_of"] for f in fields(cls)
                 if f.metadata.get("old_name_of")}
    old_places = {f"{where}.{name}" for name in names if name in raw}
    for name in names:
        if name in raw and name not in old_names:
            warnings.append(f"{where}.{name}: moved to {where}.{KEY}.{name}; read from its "
                            "old place for now")
    inner = raw.pop(KEY, None) if KEY in raw and KEY not in hints else None
    if inner is not None and not isinstance(inner, dict):
        problems.append((f"{where}.{KEY}", f"expected a mapping of "
                         f"{', '.join(names) or 'nothing'}, got {inner!r}"))
        inner = None
    for name, value in (inner or {}).items():
        if name not in names:
            problems.append(_not_advanced(where, str(name), names, hints))
        elif name in raw:
            problems.append((f"{where}.{KEY}.{name}", f"also given as {where}.{name}: keep one"))
        else:
            raw[name] = value
    warnings += [f"{where}.{name}: the older name of {new}; set that instead"
                 for name, new in old_names.items() if raw.get(name)]
    for f in fields(cls):
        if is_dataclass(hints[f.name]) and f.name in raw:
            more = lift(raw[f.name], hints[f.name], f"{where}.{f.name}")
            problems, warnings = problems + more[0], warnings + more[1]
            old_places |= more[2]
    return problems, warnings, old_places


def _not_advanced(where: str, name: str, names: list[str], hints: dict) -> Problem:
    key = f"{where}.{KEY}.{name}"
    if name in hints:
        return key, f"not an advanced field: set it as {where}.{name}"
    choices = ", ".join(names) if names else "none in this section"
    return key, f"unknown key{nearest(name, names)}. Advanced here: {choices}"
