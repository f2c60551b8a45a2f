"""Render the schema as a field reference (``python -m jobs schema [--all] [--markdown]``).

docs/spec-reference.md's field tables are this output; a test keeps them in sync, so the documented
defaults are always the real ones. A section's advanced fields (``opt(..., advanced=True)``:
almost no one sets them) are listed after the others, under their ``advanced:`` key, and the
plain view counts them unless ``--all`` asks for them.
"""
from __future__ import annotations

import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

from gan.families import FAMILIES
from jobs.core.advanced import is_advanced
from jobs.core.loader import _type_name
from jobs.core.overrides import spec_key
from jobs.core.recipes import RECIPE_HELP, RECIPES
from jobs.core.schema import SPEC_SECTIONS, TOP_LEVEL_HELP

# choices declared outside the schema (the model families live with the models)
CHOICES = {"train.model.name": ": " + "; ".join(f"{name}: {fam.summary}"
                                               for name, fam in FAMILIES.items())}


def _rows(cls: type, prefix: str, advanced: bool):
    """(key as a spec writes it, type, default, help) of the ordinary or the advanced
    fields, sections first named where they hold any."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = spec_key(f"{prefix}.{f.name}")
        tp = hints[f.name]
        if is_dataclass(tp):
            inner = list(_rows(tp, f"{prefix}.{f.name}", advanced))
            if inner:
                yield key, "section", "", f.metadata.get("help", "")
                yield from inner
            continue
        if is_advanced(f) != advanced:
            continue
        if f.default is not MISSING:
            default = repr(f.default)
        elif f.default_factory is not MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        meta = f.metadata
        bounds = [f"{word} {meta[k]}" for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="),
                                                       ("lt", "<")) if meta.get(k) is not None]
        help_text = meta.get("help", "") + (f" ({', '.join(bounds)})" if bounds else "")
        if meta.get("path") == "exists":
            help_text += " [must exist]"
        yield key, _type_name(tp), default, help_text + CHOICES.get(key, "")


def sections(advanced: bool = True) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """(title, rows) per section: the ordinary fields of each, then (``advanced``) the
    advanced fields of each that has any."""
    top = [(k, "string" if k != "env" else "mapping", "required" if k in ("kind", "name")
            else "{}", v) for k, v in TOP_LEVEL_HELP.items() if k != "resources"]
    titles = {"resources": "resources (every kind)"}
    out = [("top level", top)] + [(titles.get(name, f"{name}:"), list(_rows(cls, name, False)))
                                  for name, cls in SPEC_SECTIONS.items()]
    if advanced:
        out += [(f"{titles.get(name, name + ':')} advanced", rows)
                for name, cls in SPEC_SECTIONS.items() if (rows := list(_rows(cls, name, True)))]
    return out


def counts() -> tuple[int, int]:
    """(fields a user sees by default, advanced fields), sections not counted."""
    def leaves(advanced: bool) -> int:
        return sum(1 for name, cls in SPEC_SECTIONS.items() for row in _rows(cls, name, advanced)
                   if row[1] != "section")
    return leaves(False), leaves(True)


def render(markdown: bool = False, everything: bool = True) -> str:
    lines: list[str] = []
    for title, rows in sections(advanced=everything):
        if markdown:
            lines += [f"#### {title}", "", "| key | type | default | meaning |",
                      "| --- | --- | --- | --- |"]
            lines += [f"| `{k}` | {t} | `{d}` | {h} |".replace("`` ", "").replace("``", "")
                      for k, t, d, h in rows]
        else:
            lines.append(f"[{title}]")
            lines += [f"  {k:<42} {d:<18} {h}" for k, t, d, h in rows]
        lines.append("")
    if not everything:
        lines += [f"(and {counts()[1]} advanced fields almost no one sets, each in its "
                  "section's advanced: -- python -m jobs schema --all lists them)", ""]
    lines += _recipe_table(markdown)
    return "\n".join(lines).rstrip() + "\n"


def _recipe_table(markdown: bool) -> list[str]:
    """Each train.recipe's values, field by field (a field the spec sets wins)."""
    keys = list(dict.fromkeys(k for values in RECIPES.values() for k in values))
    names = list(RECIPES)
    if not markdown:
        lines = ["[train.recipe]"] + [f"  {n:<10} {RECIPE_HELP[n]}" for n in names]
        return lines + [f"  {spec_key('train.' + k):<42} " + "  ".join(
            f"{n}={RECIPES[n][k]!r}" if k in RECIPES[n] else f"{n}=(default)"
            for n in names) for k in keys]
    lines = ["#### train.recipe", "",
             "Each recipe fills the fields the spec leaves out; a field the spec sets wins. "
             + "; ".join(f"{n}: {RECIPE_HELP[n]}" for n in names) + ".", "",
             "| key | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    return lines + [f"| `{spec_key('train.' + k)}` | " + " | ".join(
        f"`{RECIPES[n][k]!r}`" if k in RECIPES[n] else "(default)" for n in names) + " |"
        for k in keys]


FIELDS_START, FIELDS_END = "<!-- fields:start -->", "<!-- fields:end -->"


def update_reference(path) -> None:
    """Replace a page's field reference (docs/spec-reference.md) with the current schema."""
    text = Path(path).read_text()
    head, rest = text.split(FIELDS_START, 1)
    _, tail = rest.split(FIELDS_END, 1)
    Path(path).write_text(f"{head}{FIELDS_START}\n{render(markdown=True)}{FIELDS_END}{tail}")
