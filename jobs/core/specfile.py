"""Reading a spec file's text and YAML without being hurt by it.

A spec comes from a user's editor, a script, or a sweep generator, and the loader must turn any
file into either data or one clear error naming the file (exit 2), never a traceback or an
exhausted node: a spec that is not UTF-8, a directory, a 50 MB file, a "billion laughs" of
nested aliases, nesting deep enough to overflow the parser's recursion. YAML is parsed safely
(no Python objects), duplicate keys are errors, and numbers follow YAML 1.2.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from jobs.core.schema import SpecError

MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; 1 MiB leaves room for any real sweep
MAX_NODES = 100_000       # nodes after aliases are expanded: a real spec has a few hundred


def read_spec_text(path: str | Path) -> str:
    """The spec's text, or a SpecError naming the file and what is wrong with it."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError([f"{source}: cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError([f"{source}: larger than {MAX_SPEC_BYTES >> 20} MiB; a job spec is a "
                         "page of YAML (is this the right file?)"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SpecError([f"{source}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                         f"at offset {exc.start}); save the spec as UTF-8"]) from None


# ---------------------------------------------------------------------------------------------
# YAML: safe, no duplicate keys, YAML 1.2 floats ("1e-4" is a number, not a string)
# ---------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1's base-60 numbers are gone in 1.2: an unquoted 1:30:00 is a walltime string,
# not the integer 5400 (nor 90:00 the integer 5400)
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$|^0x[0-9a-fA-F]+$|^0o[0-7]+$"),
    list("-+0123456789"))
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+."))
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d+\.\d*|\.\d+)$"),
    list("-+0123456789."))


def expanded_size(node: yaml.Node, limit: int, sizes: dict | None = None) -> int:
    """How many nodes ``node`` becomes once every alias is copied out, counted on the composed
    graph (an alias is the same node object, so each is counted once, memoised), stopping as
    soon as the count passes ``limit``."""
    sizes = {} if sizes is None else sizes
    if id(node) in sizes:
        return sizes[id(node)]
    total = 1
    children = node.value if isinstance(node, yaml.SequenceNode) else \
        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    for child in children:
        total += expanded_size(child, limit, sizes)
        if total > limit:
            break
    sizes[id(node)] = total
    return total


def parse_yaml(text: str, source: str) -> Any:
    """The document's data; a SpecError for bad YAML, an alias bomb or absurd nesting."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and expanded_size(node, MAX_NODES) > MAX_NODES:
            raise SpecError([f"{source}: holds more than {MAX_NODES} values once its aliases "
                             "(&anchor / *alias) are expanded; a job spec has a few hundred"])
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}: not valid YAML: {exc}"]) from None
    except RecursionError:
        raise SpecError([f"{source}: nested too deeply to be a job spec"]) from None
    finally:
        loader.dispose()


def parse_scalar(text: str) -> Any:
    """A ``--set`` value: YAML scalar rules, so ``3``, ``1e-4``, ``true`` and ``[1, 2]`` work."""
    return parse_yaml(text, "--set") if text.strip() else ""
