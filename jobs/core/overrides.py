"""``--set`` and sweep keys into a spec's YAML, and the keys as a spec writes them.

An override names a field by its dotted key. An advanced field (``jobs/core/advanced.py``)
named at its old place, ``train.guard.d_bounds``, goes to its section's ``advanced:`` with a
warning, and wins over the spec's value at either place. ``spec_key`` names any field as a
spec writes it, for messages and the generated reference.
"""
from __future__ import annotations

import logging
import typing
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any

from jobs.core import advanced
from jobs.core.schema import SPEC_SECTIONS, SpecError
from jobs.core.specfile import parse_scalar

log = logging.getLogger("jobs.core.loader")  # where a spec's other warnings are said


def apply_override(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in nested dicts, creating sections as needed."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise SpecError([f"--set {dotted}: '{key}' is not a section"])
        node = child
    node[keys[-1]] = value


def parse_set_args(items: Iterable[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError([f"--set {item!r}: expected KEY=VALUE, e.g. "
                             "train.optimizer.learning_rate=1e-4"])
        out.append((key.strip(), parse_scalar(raw)))
    return out


def spec_key(where: str) -> str:
    """A dotted key as a spec writes it: an advanced field in its section's ``advanced:``
    (``train.guard.d_bounds`` -> ``train.guard.advanced.d_bounds``); others as they are."""
    root, *names = where.split(".")
    cls = SPEC_SECTIONS.get(root)
    shown = [root]
    for i, name in enumerate(names):
        declared = {f.name: f for f in fields(cls)} if is_dataclass(cls) else {}
        if name not in declared:
            return ".".join(shown + names[i:])
        if advanced.is_advanced(declared[name]):
            shown.append(advanced.KEY)
        shown.append(name)
        cls = typing.get_type_hints(cls).get(name)
    return ".".join(shown)


_WARNED: set[tuple[str, str]] = set()  # a sweep loads its base once per point: each warning once


def warn_once(source: str, text: str) -> None:
    if (source, text) not in _WARNED:
        _WARNED.add((source, text))
        log.warning("%s: %s", source, text)


def apply_overrides(data: dict, overrides: Iterable[tuple[str, Any]], source: str) -> set[str]:
    """``--set`` and sweep keys, each into its field's place as a spec writes it: an
    advanced field named at its old place goes to its section's ``advanced:`` (with a
    warning), and an override wins over the spec's value at either place. The keys given
    at an old place (a problem in one is named as written)."""
    as_written = set()
    for dotted, value in overrides:
        key = spec_key(dotted)
        if key != dotted:
            warn_once(source, f"--set {dotted}: moved to {key}; read from its old place "
                               "for now")
            as_written.add(dotted)
        if f".{advanced.KEY}." in key:
            _drop(data, key.replace(f".{advanced.KEY}.", "."))
        apply_override(data, key, value)
    return as_written


def _drop(data: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        data = data.get(name) if isinstance(data, dict) else None
    if isinstance(data, dict):
        data.pop(last, None)
