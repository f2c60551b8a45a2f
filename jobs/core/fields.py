"""Field declarations for the job schema.

Every spec field is declared once with :func:`opt`: its default, a one-line help text and its
constraints. The validator (``jobs.core.loader``), ``python -m jobs schema`` and the field
table of docs/spec-reference.md all read these declarations, so a default or a range lives in
exactly one place.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import fields, is_dataclass
from typing import Any

_MISSING = dataclasses.MISSING


def opt(
    default: Any = _MISSING,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    path: str | None = None,
    parse: Callable[[Any], Any] | None = None,
    example: Any = None,
    advanced: bool = False,
    old_name_of: str | None = None,
) -> Any:
    """Declare a spec field.

    ``advanced``: a field almost no one sets. A spec sets it in its section's ``advanced:``
    sub-section (``jobs/core/advanced.py``), and ``python -m jobs schema`` lists it there,
    after the fields a user sees by default. ``old_name_of``: the field is an old spelling
    of another setting, still read, with a warning naming it.

    ``path`` is ``"exists"`` for inputs that must exist when a job is planned or run, or
    ``"output"`` for locations the job creates. ``parse`` normalises a raw YAML value (and
    raises ``ValueError`` with a message for the user). Secrets are ``env:`` values, redacted
    by name (:func:`is_secret_name`), not spec fields.
    """
    meta = dict(help=help, ge=ge, gt=gt, le=le, lt=lt, path=path, parse=parse,
                example=example, advanced=advanced, old_name_of=old_name_of)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = (lambda d=default: type(d)(d)) if isinstance(default, (list, dict)) \
            else (lambda d=default: dataclasses.replace(d))
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, help: str = "") -> Any:
    """A nested section whose defaults come from its own dataclass."""
    return dataclasses.field(default_factory=cls, metadata=dict(help=help, path=None,
                                                                 parse=None))


_WALLTIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<rest>\d+(?::\d+){0,2})$")


def parse_walltime(value: Any) -> str:
    """Accept Slurm's time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``) or minutes
    as an integer, and normalise to ``D-HH:MM:SS`` so plans are unambiguous."""
    minutes = walltime_minutes(value)
    if minutes < 1:
        raise ValueError("must be at least 1 minute")
    d, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:00" if d else f"{h:02d}:{m:02d}:00"


def walltime_minutes(value: Any) -> int:
    """Minutes in a Slurm time string (seconds round up, as Slurm does)."""
    if isinstance(value, bool):
        raise ValueError("expected a Slurm time like '04:00:00' or minutes, got a boolean")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    match = _WALLTIME.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
                         "or D-HH:MM:SS)")
    parts = [int(v) for v in match["rest"].split(":")]
    if match["d"] is not None:  # after a day count Slurm reads hours first
        if len(parts) > 3:
            raise ValueError(f"{text!r} is not a Slurm time")
        h, m, sec = (parts + [0, 0])[:3]
        seconds = ((int(match["d"]) * 24 + h) * 60 + m) * 60 + sec
    else:  # MM, MM:SS, HH:MM:SS
        h, m, sec = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        seconds = (h * 60 + m) * 60 + sec
    return -(-seconds // 60)


def nearest(key: str, allowed: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# an env: variable whose name holds one of these prints as *** (the spec reference says so)
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "KEY", "CREDENTIAL")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def to_plain(obj: Any) -> Any:
    """Dataclasses to dicts (field order kept)."""
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def iter_path_fields(obj: Any, where: str):
    """Yield (dotted key, value, 'exists'|'output') for every path field in a spec section."""
    if not is_dataclass(obj):
        return
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("path") and isinstance(value, str):
            yield f"{where}.{f.name}", value, f.metadata["path"]
        elif is_dataclass(value):
            yield from iter_path_fields(value, f"{where}.{f.name}")


# value parsers of the schema's fields: each returns the value normalised, or raises
# ValueError with a message for the user
def parse_band(value: Any) -> list[float]:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not ok or not value[0] < value[1]:
        raise ValueError(f"expected [low, high] with low < high, got {value!r}")
    return [float(v) for v in value]


AUGMENTATIONS = ("color", "translation", "cutout", "flip")


def parse_augment_policy(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of augmentations, got {value!r}")
    for name in value:
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}{nearest(name, AUGMENTATIONS)}; "
                             f"choose from {', '.join(AUGMENTATIONS)}")
    return list(value)


def parse_sha256(value: Any) -> str:
    if not (isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value)):
        raise ValueError(f"expected 64 hexadecimal digits (sha256sum's output), got {value!r}")
    return value.lower()


def parse_filters(value: Any) -> list[int]:
    ok = isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"expected a non-empty list of positive integers, got {value!r}")
    return list(value)


def parse_ends(value):
    """[start, end] of a schedule: two numbers."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"expected [start, end], two numbers; got {value!r}")
    return [float(v) for v in value]
