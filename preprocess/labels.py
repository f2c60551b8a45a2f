"""Class labels as rules over CelebA attributes (from the spec's ``classes:`` and ``filter:``).

A rule holds when all its ``all`` attributes are present and none of its ``none`` attributes
are. The first matching class gives the label; a photo matching no class is dropped and counted
(reason ``no_class``), as is one failing the filter (``filtered``).
"""
from __future__ import annotations

import numpy as np

from jobs.core.schema import ClassRule, PreprocessSpec
from preprocess.decode import Skip
from preprocess.inputs import InputError


class Labeler:
    def __init__(self, spec: PreprocessSpec, attribute_names: list[str]):
        self.index = {name: i for i, name in enumerate(attribute_names)}
        self.rules = list(spec.classes)
        self.filter = spec.filter
        needed = {a for r in self.rules + ([self.filter] if self.filter else [])
                  for a in r.all + r.none}
        missing = sorted(needed - set(self.index))
        if missing:
            raise InputError("class rules use attributes the input has none of: "
                             + ", ".join(missing)
                             + (" (a plain photo folder has no attributes)"
                                if not attribute_names else ""))
        self.class_names = [r.name for r in self.rules] or ["all"]

    def _holds(self, rule: ClassRule, attrs: np.ndarray) -> bool:
        return (all(attrs[self.index[a]] for a in rule.all)
                and not any(attrs[self.index[a]] for a in rule.none))

    def label(self, attrs: np.ndarray | None) -> int:
        """The class of a photo with these 0/1 attributes, or raise Skip."""
        if attrs is None:
            return 0  # no rules possible without attributes (checked in __init__)
        if self.filter is not None and not self._holds(self.filter, attrs):
            raise Skip("filtered", f"does not match filter '{self.filter.name}'")
        if not self.rules:
            return 0
        for label, rule in enumerate(self.rules):
            if self._holds(rule, attrs):
                return label
        raise Skip("no_class")
