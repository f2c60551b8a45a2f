"""Views read records, never prose: no code in ``jobs/``, ``gan/`` or ``preprocess/`` reads a
job's log or parses an exception's message, the regular expressions there match only specs,
command-line values and system files, and the views read the run events
(``jobs/core/events.py``), not the files the run events replaced. A reworded log line or
error message can then never break a view silently."""
from __future__ import annotations

import ast
from pathlib import Path

from jobs.core import events
from tests.test_layers import module_name, project_modules

# every regular expression in the code, with what it matches: none matches a log line
REGEX_HOMES = {
    "jobs.sweep": "a point's overrides into a directory name",
    "jobs.core.schema": "sbatch option names and typed GPU gres in resources.slurm_extra",
    "jobs.core.chain": "--chain FIRST:K on the command line",
    "jobs.core.loader": "a job's name in a spec",
    "jobs.core.rundir": "latest|best|ckpt-N in train.init_from",
    "jobs.core.fields": "a Slurm walltime and a SHA-256 in a spec",
    "jobs.core.specfile": "YAML 1.2 scalars in a spec",
    "gan.parallel.devices": "/proc/driver/nvidia/version, the kernel module's own file",
    "gan.models.builders": "D's layer names in freeze_d",
}
LOG_SUFFIXES = (".log", ".err", ".out")
# what the views read before run events existed: no view reads them now
REPLACED = {"read_metrics", "read_best", "outcome.json", "best.json", "ranks.csv",
            "metrics.csv", "METRICS_FILE", "BEST_RECORD"}
VIEWS = ("jobs.progress", "jobs.status", "jobs.sweep", "jobs.early_stop", "jobs.submit")


def trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path))
            for name, path in project_modules().items()}


def _where(module: str, node: ast.AST) -> str:
    return f"{module}:{getattr(node, 'lineno', '?')}"


READERS = {"open", "read_text", "read_bytes", "readlines", "LogTail"}
LOG_WORDS = ("stderr", "stdout", *LOG_SUFFIXES)


def _reads_a_log(node: ast.Call) -> bool:
    """``open(<a log>)``, ``<a log>.read_text()`` and the like: a log by its name, or a
    job's stderr/stdout path."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in READERS:
        return False
    read = [*node.args] + ([func.value] if isinstance(func, ast.Attribute) else [])
    return any(word in ast.unparse(x) for x in read for word in LOG_WORDS)


def test_no_code_reads_a_jobs_log():
    """submitit's ``job.stderr()``/``stdout()`` return a job's log, and so does any file
    named like one. Pointing a person at a log is fine; reading one is not."""
    found = []
    for module, tree in trees().items():
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("stderr", "stdout") \
                    and not node.args:
                found.append(f"{_where(module, node)} calls .{node.func.attr}()")
            elif _reads_a_log(node):
                found.append(f"{_where(module, node)} reads a log: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def _message_of(node: ast.AST, names: set[str]) -> bool:
    """Whether ``node`` is an exception's text: ``str(exc)``, ``exc.args``, ``f"{exc}"``, or
    a name that was given one (``text = str(exc)``: ``names`` holds it as ``=text``)."""
    if isinstance(node, ast.Name) and f"={node.id}" in names:
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in ("str", "repr") and node.args \
            and isinstance(node.args[0], ast.Name) and node.args[0].id in names:
        return True
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id in names and node.attr == "args":
        return True
    return isinstance(node, ast.JoinedStr) and any(
        isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name)
        and v.value.id in names for v in node.values)


PARSING_METHODS = {"startswith", "endswith", "find", "index", "split", "rsplit", "partition",
                   "count"}  # (the first of its lines, for a person, is display, not parsing)
# the one place a library's message is all there is to go on, and why
LIBRARY_MESSAGES = {
    "jobs.core.files.is_disk_full": "TensorFlow's checkpoint writer raises "
    "ResourceExhaustedError without an errno: 'No space left on device' in its message is "
    "the only sign of a full disk. Our own code's outcomes are events, never messages."}


def _parses(node: ast.AST, names: set[str]) -> str | None:
    if isinstance(node, ast.Compare) and any(
            _message_of(x, names) for x in [node.left, *node.comparators]):
        return "compares an exception's message"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        receiver = node.func.value
        while isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute):
            receiver = receiver.func.value  # str(exc).strip().split(...)
        if node.func.attr in PARSING_METHODS and _message_of(receiver, names):
            return f"takes an exception's message apart (.{node.func.attr})"
        if isinstance(node.func.value, ast.Name) and node.func.value.id == "re" \
                and any(_message_of(a, names) for a in node.args):
            return "runs a regular expression over an exception's message"
    return None


def _exception_scopes(tree: ast.Module, module: str = ""):
    """(scope, the names an exception goes by there): each ``except ... as exc`` handler,
    and each function taking a parameter annotated as an exception. A name assigned an
    exception's message in the scope joins as ``=name``."""
    for node in ast.walk(tree):
        names: set[str] = set()
        if isinstance(node, ast.ExceptHandler) and node.name:
            names = {node.name}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and f"{module}.{node.name}" not in LIBRARY_MESSAGES:
            names = {a.arg for a in node.args.args + node.args.kwonlyargs if a.annotation
                     and ast.unparse(a.annotation).endswith(("Exception", "Error"))}
        if not names:
            continue
        for assign in (n for n in ast.walk(node) if isinstance(n, ast.Assign)):
            if _message_of(assign.value, names):
                names |= {f"={t.id}" for t in assign.targets if isinstance(t, ast.Name)}
        yield node, names


def test_no_code_parses_an_exception_message():
    """An exception's message is for people: code that branches on it breaks when it is
    reworded. Logging it, or putting it in another message, is what it is for."""
    found = []
    for module, tree in trees().items():
        for scope, names in _exception_scopes(tree, module):
            found += [f"{_where(module, node)} {why}" for node in ast.walk(scope)
                      if (why := _parses(node, names))]
    assert not found, "\n".join(sorted(set(found)))


def test_regular_expressions_match_specs_and_system_files_only():
    using = {module for module, tree in trees().items() for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom))
             and any(a.name == "re" for a in node.names)
             or isinstance(node, ast.ImportFrom) and node.module == "re"}
    assert using == set(REGEX_HOMES), (
        f"regular expressions in {sorted(using - set(REGEX_HOMES))}: if one reads a log line "
        "or a message, record an event instead (jobs/core/events.py); else add the module "
        "and what it matches to REGEX_HOMES")


def test_the_views_read_events_not_the_files_they_replaced():
    known = project_modules()
    for view in VIEWS:
        text = known[view].read_text()
        assert "events" in text, f"{view} does not read run events"
        stale = sorted(name for name in REPLACED if name in text)
        assert not stale, f"{view} reads {stale}: read the run's events instead"


def test_the_checks_above_catch_what_they_are_for(tmp_path):
    """Each rule fails on the code it forbids (else it would pass by catching nothing)."""
    bad = ast.parse(
        "try:\n    pass\nexcept Exception as exc:\n"
        "    if 'exit code 3' in str(exc):\n        pass\n"
        "    code = str(exc).strip().split(':')[0]\n"
        "    re.search('x', f'{exc}')\n")
    handler = next(n for n in ast.walk(bad) if isinstance(n, ast.ExceptHandler))
    reasons = {_parses(n, {"exc"}) for n in ast.walk(handler)} - {None}
    assert reasons == {"compares an exception's message",
                       "takes an exception's message apart (.split)",
                       "runs a regular expression over an exception's message"}
    log_reads = [n for n in ast.walk(ast.parse(
        "open(job.paths.stderr)\nPath(f'{d}/x-1.out').read_text()\nopen(spec_path)\n"))
        if isinstance(n, ast.Call) and _reads_a_log(n)]
    assert [ast.unparse(n) for n in log_reads] == [
        "open(job.paths.stderr)", "Path(f'{d}/x-1.out').read_text()"]
    fine = ast.parse("try:\n    pass\nexcept OSError as exc:\n    log.error('%s', exc)\n"
                     "    raise SpecError([f'{path}: {exc}'])\n")
    handler = next(n for n in ast.walk(fine) if isinstance(n, ast.ExceptHandler))
    assert {_parses(n, {"exc"}) for n in ast.walk(handler)} == {None}
    helper = ast.parse("def _exit_code(exc: BaseException) -> int:\n    text = str(exc)\n"
                       "    return 3 if 'exit code 3' in text else 1\n")
    assert [why for _, names in _exception_scopes(helper) for n in ast.walk(helper)
            if (why := _parses(n, names))] == ["compares an exception's message"]
    assert module_name(Path(events.__file__)) == "jobs.core.events"
