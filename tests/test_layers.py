"""One-way layers: the base (``jobs.core``) imports nothing of the project above it; ``gan`` and
``preprocess`` are peers that import only the base; the orchestration (the rest of ``jobs``)
sits on top. Every import counts, including those inside functions, and no two modules may
import each other, directly or round a longer cycle."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("jobs", "gan", "preprocess")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports anywhere in its body (``from a import b`` counts
    as ``a.b`` when that is a module, else as ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
    return {m for m in found if m in known}


def layer(module: str) -> str:
    if module == "jobs" or module.startswith("jobs.core"):
        return "base"
    if module.split(".")[0] in ("gan", "preprocess"):
        return module.split(".")[0]
    return "orchestration"


ALLOWED = {"base": {"base"}, "gan": {"base", "gan"}, "preprocess": {"base", "preprocess"},
           "orchestration": {"base", "gan", "preprocess", "orchestration"}}


def graph() -> dict[str, set[str]]:
    known = project_modules()
    return {m: imports_of(p, known) - {m} for m, p in known.items()}


def test_no_import_goes_down_to_up_or_sideways():
    wrong = [f"{m} ({layer(m)}) imports {d} ({layer(d)})"
             for m, deps in graph().items() for d in sorted(deps)
             if layer(d) not in ALLOWED[layer(m)]]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_package_inits_import_nothing_of_the_project():
    known = project_modules()
    for pkg in PACKAGES:
        assert not imports_of(ROOT / pkg / "__init__.py", known), pkg


def test_modules_and_functions_stay_small():
    """Small modules with one job each (< 400 lines), functions < 60 lines."""
    too_big = []
    for pkg in (*PACKAGES, "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            text = path.read_text()
            if len(text.splitlines()) >= 400:
                too_big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length >= 60:
                        too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                       f"{length} lines")
    assert not too_big, "\n".join(too_big)


def test_no_import_the_graph_cannot_see():
    """Relative imports and imports by string (importlib, __import__) would slip past the
    checks above: the project has none."""
    hidden = []
    for module, path in project_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                hidden.append(f"{module}:{node.lineno} relative import")
            elif isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("importlib.import_module", "import_module", "__import__"):
                    hidden.append(f"{module}:{node.lineno} {name}(...)")
    assert not hidden, "\n".join(hidden)


# Libraries slow to import (TensorFlow: seconds) or absent where the base runs: a function may
# import these, or a project module that imports one at its top, lazily, so that the CLI,
# plan and validate start in a fraction of a second. Nothing else is imported in a function.
HEAVY = {"tensorflow", "keras", "horovod", "sklearn", "skimage", "matplotlib", "mtcnn", "absl",
         "mlflow", "wandb",  # (optional extras, imported only when a spec asks for one)
         "optuna"}  # (only the sweeps that draw their points)


def _imports(path: Path, inside_functions: bool) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) of the imports at a module's top level, or of
    those inside its functions."""
    tree = ast.parse(path.read_text(), str(path))
    nested = {id(sub) for node in ast.walk(tree)
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or \
                (id(node) in nested) != inside_functions:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names]
        elif node.module:
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return found


def _resolve(module: str, name: str | None, known: dict[str, Path]) -> str:
    full = f"{module}.{name}" if name else module
    return full if full in known else module


def _is_heavy(module: str, known: dict[str, Path], seen: set[str]) -> bool:
    """A heavy library, or a project module whose top-level imports reach one."""
    if module.split(".")[0] in HEAVY:
        return True
    if module not in known or module in seen:
        return False
    seen.add(module)
    return any(_is_heavy(_resolve(m, n, known), known, seen)
               for _, m, n in _imports(known[module], inside_functions=False))


def test_imports_inside_functions_only_defer_heavy_libraries():
    """CONTRIBUTING's rule: imports go at the top of a module, except the lazy imports of
    HEAVY libraries (or of a project module that imports one), which keep the command line
    fast."""
    known = project_modules()
    wrong = [f"{module}:{line} imports {_resolve(m, n, known)} inside a function"
             for module, path in known.items()
             for line, m, n in _imports(path, inside_functions=True)
             if not _is_heavy(_resolve(m, n, known), known, set())]
    assert not wrong, "\n".join(wrong)


JOB_KINDS = "train|sweep|preprocess|merge|generate|pipeline"
KIND_COMPARISON = re.compile(rf"""\.kind\s*(==|!=)\s*["']({JOB_KINDS})["']"""
                             rf"""|\.kind\s+(not\s+)?in\s*[(\[{{]\s*["']({JOB_KINDS})["']""")


def test_job_kinds_are_told_apart_only_by_their_table():
    """The orchestration, gan and preprocess branch on a job's kind only through
    ``jobs/kinds.py``. The base cannot import that table: it keeps its own per-kind facts
    (the work sections, the pipeline's stages, ``expect_kind``) in jobs/core."""
    found = [f"{module}:{lineno}: {line.strip()}"
             for module, path in project_modules().items()
             if module != "jobs.kinds" and layer(module) != "base"
             for lineno, line in enumerate(path.read_text().splitlines(), start=1)
             if KIND_COMPARISON.search(line)]
    assert not found, "\n".join(found)
