"""Read a YAML job spec strictly and turn it into a validated :class:`jobs.core.schema.JobSpec`.

Strict means: YAML is parsed with a safe loader (no Python objects, no code), duplicate keys are
errors, every key must be declared in ``jobs.core.schema`` (a typo names the nearest allowed key),
values are type- and range-checked, and all problems in a file are reported at once, each
prefixed with ``file: dotted.key:`` so the user can jump straight to it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from jobs.core import advanced, facefile
from jobs.core.fields import iter_path_fields, nearest
from jobs.core.overrides import apply_overrides, parse_set_args, spec_key, warn_once
from jobs.core.recipes import fill_recipe
from jobs.core.schema import (
    SPEC_SECTIONS,
    TOP_LEVEL_HELP,
    WORK_SECTIONS,
    JobSpec,
    Resources,
    SpecError,
)
from jobs.core.specfile import parse_yaml, read_spec_text

__all__ = ["SpecError", "load_spec", "parse_spec", "parse_set_args", "check_paths",
           "pipeline_stages", "pipeline_problems"]

log = logging.getLogger(__name__)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if is_dataclass(tp):
        return "a mapping (section)"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            Any: "any value"}.get(tp, str(tp))


class _Validator:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []
        self.from_recipe: dict[str, str] = {}  # dotted key -> the train.recipe that set it
        self.old_places: set[str] = set()  # advanced fields the spec set at their old place
        self.resolved = False  # a run's resolved spec: no warnings

    def fail(self, where: str, message: str) -> None:
        recipe = self.from_recipe.get(where)
        shown = where if where in self.old_places else spec_key(where)
        if recipe:
            message += (f" (the value of train.recipe: {recipe}; set {shown} in the spec to "
                        "choose another)")
        self.problems.append(f"{self.source}: {shown}: {message}")

    def build(self, cls: type, data: Any, where: str) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(where, f"expected a mapping (section), got {type(data).__name__}")
            return cls.__new__(cls)
        hints = typing.get_type_hints(cls)
        declared = {f.name: f for f in fields(cls)}
        for key in data:
            if key not in declared:
                self.fail(f"{where}.{key}", f"unknown key{nearest(str(key), declared)}. "
                                            f"Allowed keys: {', '.join(declared)}")
        values = {}
        for name, f in declared.items():
            if name in data:
                values[name] = self.value(hints[name], data[name], f"{where}.{name}", f.metadata)
            elif f.default is not MISSING:
                values[name] = f.default
            elif f.default_factory is not MISSING:
                values[name] = f.default_factory()
            else:
                self.fail(f"{where}.{name}", "required key is missing"
                          + (f" (e.g. {f.metadata['example']!r})"
                             if f.metadata.get("example") else ""))
                values[name] = None
        return cls(**values)

    def value(self, tp: Any, raw: Any, where: str, meta: typing.Mapping = {}) -> Any:
        parse = meta.get("parse")
        if parse is not None and raw is not None:
            try:
                return parse(raw)
            except ValueError as exc:
                self.fail(where, str(exc))
                return raw
        checked = self.check_type(tp, raw, where)
        if isinstance(checked, (int, float)) and not isinstance(checked, bool):
            self.check_range(checked, where, meta)
        return checked

    def check_type(self, tp: Any, raw: Any, where: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return raw
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if raw is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.check_type(inner[0] if len(inner) == 1 else Any, raw, where)
        if origin is Literal:
            choices = typing.get_args(tp)
            if raw not in choices:
                self.fail(where, f"{raw!r} is not allowed{nearest(str(raw), map(str, choices))}. "
                                 f"Allowed: {', '.join(map(str, choices))}")
            return raw
        if is_dataclass(tp):
            return self.build(tp, raw, where)
        if origin is list:
            if not isinstance(raw, list):
                return self.wrong(tp, raw, where)
            (item,) = typing.get_args(tp)
            return [self.check_type(item, v, f"{where}[{i}]") for i, v in enumerate(raw)]
        if origin is dict:
            if not isinstance(raw, dict):
                return self.wrong(tp, raw, where)
            _, item = typing.get_args(tp)
            return {str(k): self.check_type(item, v, f"{where}.{k}") for k, v in raw.items()}
        if tp is bool:
            return raw if isinstance(raw, bool) else self.wrong(tp, raw, where)
        if tp is int:
            return raw if isinstance(raw, int) and not isinstance(raw, bool) \
                else self.wrong(tp, raw, where)
        if tp is float:
            return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
                else self.wrong(tp, raw, where)
        if tp is str:
            return raw if isinstance(raw, str) else self.wrong(tp, raw, where)
        raise TypeError(f"schema type {tp!r} at {where} is not supported by the validator")

    def wrong(self, tp: Any, raw: Any, where: str) -> Any:
        self.fail(where, f"expected {_type_name(tp)}, got {raw!r} ({type(raw).__name__})")
        return raw

    def check_range(self, value: float, where: str, meta: typing.Mapping) -> None:
        for key, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
            bound = meta.get(key)
            if bound is not None and not ok(value, bound):
                self.fail(where, f"{value!r} is out of range: must be {word} {bound}")


def parse_spec(data: Any, source: str = "<memory>", as_written: set[str] = frozenset(),
               resolved: bool = False) -> JobSpec:
    """Validate already-parsed YAML data (a dict) into a JobSpec, or raise SpecError.
    ``as_written``: advanced fields an override named at their old place; ``resolved``: the
    data is a run's own resolved spec (``train_spec.yaml``, every field at the code's
    place), not a user's: nothing to warn about."""
    v = _Validator(source)
    v.old_places |= as_written
    v.resolved = resolved
    if not isinstance(data, dict):
        raise SpecError([f"{source}: a job spec is a mapping with 'kind', 'name', 'resources' "
                         f"and a work section; got {type(data).__name__}"])
    kind = data.get("kind")
    if kind not in WORK_SECTIONS:
        hint = nearest(str(kind), WORK_SECTIONS) if kind else ""
        raise SpecError([f"{source}: kind: {'missing' if kind is None else repr(kind)} is not a "
                         f"job kind{hint}. Allowed: {', '.join(WORK_SECTIONS)}"])
    allowed = list(TOP_LEVEL_HELP) + [kind]
    for key in data:
        if key not in allowed:
            extra = (f" ('{key}:' is the section of kind {key}, but this is kind {kind})"
                     if key in WORK_SECTIONS else nearest(str(key), allowed))
            v.fail(str(key), f"unknown key{extra}. Allowed keys: {', '.join(allowed)}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        v.fail("name", f"expected a job name of letters, digits, '-', '_', '.', got {name!r}")
    _lift_advanced(v, data, "resources")
    resources = v.build(Resources, data.get("resources"), "resources")
    env = v.check_type(dict[str, str], data.get("env") or {}, "env")
    if kind not in data:
        v.fail(kind, f"the work section '{kind}:' is missing")
    _lift_advanced(v, data, kind)
    if kind == "train":
        v.from_recipe = fill_recipe(data.get(kind), kind)
    work = v.build(WORK_SECTIONS[kind], data.get(kind), kind)
    if not v.problems:
        _section_problems(v, resources, "resources")
        _section_problems(v, work, kind)
    if v.problems:
        raise SpecError(v.problems)
    resolve_paths(work, Path.cwd())
    return JobSpec(kind=kind, name=name, resources=resources, env=env, work=work, source=source)


def _lift_advanced(v: _Validator, data: dict, section: str) -> None:
    """A section's ``advanced:`` fields into place (``jobs/core/advanced.py``)."""
    cls = SPEC_SECTIONS[section]
    problems, warnings, old_places = advanced.lift(data.get(section), cls, section)
    v.old_places |= old_places
    for where, why in problems:
        v.fail(where, why)
    for text in [] if v.resolved else warnings:
        warn_once(v.source, text)


def inception_sections(kind: str, work: Any) -> list[tuple[str, Any]]:
    """(dotted key, InceptionSpec) of the spec's optional Inception weights."""
    if kind == "train":
        return [("train.metrics.inception", work.metrics.inception)]
    if kind == "generate":
        return [("generate.inception", work.inception)]
    return []


def precision_recall_sections(kind: str, work: Any) -> list[tuple[str, Any]]:
    """(dotted key, section) of the spec's precision_recall, nearest_k and count fields."""
    if kind == "train":
        return [("train.metrics", work.metrics)]
    if kind == "generate":
        return [("generate", work)]
    return []


def _section_problems(v: _Validator, section: Any, where: str) -> None:
    """Each section's own rules (its ``problems()``, beside its fields in the schema), for
    every section of the spec: one place per rule, each checked once."""
    if hasattr(section, "problems"):
        for key, why in section.problems():
            v.fail(f"{where}.{key}" if key else where, why)
    for f in fields(section):
        value = getattr(section, f.name)
        if is_dataclass(value):
            _section_problems(v, value, f"{where}.{f.name}")


def load_spec(path: str | os.PathLike, overrides: Iterable[tuple[str, Any]] = (),
              resolve_stages: bool = True) -> JobSpec:
    """Read, override and validate one spec file (and a pipeline's stage specs, to know its
    work directory, unless ``resolve_stages`` is false)."""
    source = str(path)
    data = parse_yaml(read_spec_text(path), source)
    if data is None:
        raise SpecError([f"{source}: the file is empty"])
    as_written = apply_overrides(data, overrides, source) if isinstance(data, dict) else set()
    spec = parse_spec(data, source, as_written)
    if spec.kind == "pipeline" and resolve_stages:
        with contextlib.suppress(SpecError):  # `validate` reports the stages' problems
            spec.stage_work_dir = pipeline_stages(spec)[1].work_dir
    return spec


def expect_kind(spec: JobSpec, kind: str, where: str, needed_by: str) -> None:
    """Refuse ``spec`` (named by ``where``, e.g. 'sweep.base: PATH') unless it is a ``kind``
    spec. The base's one kind comparison besides the pipeline's stages: the orchestration
    branches on kinds only through jobs/kinds.py."""
    if spec.kind != kind:
        raise SpecError([f"{where} is a '{spec.kind}' spec; {needed_by} needs a '{kind}' spec"])


def pipeline_stages(job: JobSpec) -> tuple[JobSpec, JobSpec]:
    """A pipeline's (preprocess spec, train spec), overrides applied, ``train.data`` wired to
    the preprocess stage's merged file."""
    pre = load_spec(job.work.preprocess, parse_set_args(job.work.preprocess_set),
                    resolve_stages=False)  # a pipeline naming a pipeline: refused below
    expect_kind(pre, "preprocess", f"{job.source}: pipeline.preprocess: {job.work.preprocess}",
                "a pipeline")
    merged = str(Path(pre.work.output_dir) / facefile.MERGED_NAME)
    train = load_spec(job.work.train, parse_set_args(job.work.train_set)
                      + [("train.data", merged)], resolve_stages=False)
    expect_kind(train, "train", f"{job.source}: pipeline.train: {job.work.train}",
                "a pipeline")
    return pre, train


def pipeline_problems(job: JobSpec) -> list[str]:
    """Problems in a pipeline's stage specs, each marked as such."""
    try:
        pipeline_stages(job)
    except SpecError as exc:
        return [f"{p} [pipeline stage]" for p in exc.problems]
    return []


# ---------------------------------------------------------------------------------------------
# Paths (checked when a job is planned or run, not when merely validated)
# ---------------------------------------------------------------------------------------------
def resolve_paths(work: Any, base: Path) -> None:
    """Make every path field absolute (``~`` and ``$VARS`` expanded, relative to ``base``), so
    a job sees the same files wherever it lands on the cluster."""
    for dotted, value, _ in list(iter_path_fields(work, "")):
        target = work
        *parents, last = dotted.strip(".").split(".")
        for name in parents:
            target = getattr(target, name)
        path = Path(os.path.expandvars(value)).expanduser()
        setattr(target, last, str(path if path.is_absolute() else (base / path).resolve()))


def check_paths(spec: JobSpec) -> list[str]:
    """Problems with paths that must exist (inputs) or be creatable (outputs)."""
    problems = []
    for where, value, role in iter_path_fields(spec.work, spec.kind):
        path = Path(value)
        if role == "exists" and not path.exists():
            problems.append(f"{spec.source}: {where}: {value!r} does not exist")
        if role == "output":
            parent = next((p for p in [path, *path.parents] if p.exists()), None)
            if parent is None or not os.access(parent, os.W_OK):
                problems.append(f"{spec.source}: {where}: cannot create {value!r} "
                                f"({parent} is not writable)")
    return problems
