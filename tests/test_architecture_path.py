"""docs/architecture.md draws the path of ``python -m jobs submit SPEC`` to the training step:
at most six project modules, each named with the functions the call passes through there.
This keeps the drawing true: every module exists, and so does every function it names."""
from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

HEADING = "### `python -m jobs submit SPEC`, to the training step and back"


def drawn_path() -> list[tuple[str, list[str]]]:
    """(module path, the names on its lines) for each numbered line of the drawing."""
    text = (ROOT / "docs/architecture.md").read_text()
    block = text[text.index(HEADING):].split("```")[1]
    path: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if match := re.match(r"^(\d) (\S+\.py)\s+(.*)$", line):
            entry = re.match(r"[A-Za-z_]\w*", match[3])[0]  # what the call enters there
            path.append((match[2], [entry]))
            line = match[3]
        if path:
            path[-1][1].extend(re.findall(r"\b([A-Za-z_][A-Za-z_0-9]*)(?:\(|\b)", line))
    return path


def test_the_submit_path_crosses_at_most_six_modules_that_exist():
    path = drawn_path()
    assert 1 <= len(path) <= 6, [module for module, _ in path]
    assert path[0][0] == "jobs/cli.py" and path[-1][0] == "gan/training/steps.py"
    for module, _ in path:
        assert (ROOT / module).is_file(), module


def test_each_function_the_drawing_names_is_in_its_module():
    checked = 0
    for module, words in drawn_path():
        tree = ast.parse((ROOT / module).read_text())
        defined = {n.name for n in ast.walk(tree)
                   if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
        defined |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        code_like = [words[0]] + [w for w in words[1:] if "_" in w or w in defined]
        missing = [w for w in code_like if w not in defined and not w.isupper()
                   and w not in ("spec", "launch")]
        assert not missing, f"{module}: the drawing names {missing}, which it does not define"
        checked += len(code_like)
    assert checked >= 10  # the drawing names the functions, not only the modules
