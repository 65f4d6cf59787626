"""The house rules a newcomer relies on, checked on the source tree.

- one concern per module: no module above ``MAX_MODULE_LINES`` lines, no function above
  ``MAX_FUNCTION_LINES`` (its docstring not counted) (the exceptions are named below, each with its reason);
- no private name (``_x``) imported from another module: a name another module needs is public;
- every import of a project name resolves to the module that defines it (lazy imports inside
  functions included, which a refactoring would otherwise break only at run time), with no
  re-exports to hide where a name lives, and every ``module.name`` of a project module too;
- no import cycle inside or between the project's packages;
- ``retrain_lib`` imports its own modules at the top of a module; inside a function only a module
  named in ``LAZY_IMPORTS`` (it loads a heavy package at its top), and only from a module that
  does not load that package itself.

``make lint`` adds ruff (style, complexity budget, no heavy import at the top of DAG and plugin
modules) and import-linter (the layers of ``retrain_lib``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "retrain_lib": ROOT / "retrain_lib",
    "retrain_airflow": ROOT / "plugins" / "retrain_airflow",
    "retrain_demo": ROOT / "plugins" / "retrain_demo",
    "retrain_native": ROOT / "plugins" / "retrain_native",
}
SOURCE_DIRS = ("retrain_lib", "plugins", "dags", "tests", "benchmarks")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# path relative to the repository -> why it may be longer
LONG_MODULES: dict[str, str] = {}
# "path:function" -> why it may be longer
LONG_FUNCTIONS: dict[str, str] = {}

# Third-party packages that make a module slow to import (DAG parsing, `retrain --help`, the status
# command and the fleet page must not load them), and the ones each of them loads in turn.
HEAVY_PACKAGES = frozenset(
    {
        "pandas",
        "numpy",
        "sklearn",
        "mlflow",
        "evidently",
        "great_expectations",
        "scipy",
        "pyarrow",
        "dvc",
        "boto3",
        "skops",
        "matplotlib",
        "sqlalchemy",
    }
)
HEAVY_IMPLIES = {"pandas": {"numpy"}, "scipy": {"numpy"}, "sklearn": {"numpy", "scipy"}}
# retrain_lib module -> why a light module of the library imports it inside a function instead
# of at its top (each loads a heavy package at its top; none is needed to break a cycle, as
# test_no_import_cycles already counts imports inside functions)
LAZY_IMPORTS: dict[str, str] = {
    "retrain_lib.store.data": "pandas: store.partition_watch runs in the triggerer, which lists partitions without it",
    "retrain_lib.learn.candidates": "numpy, pandas: adaptation_steps is imported by tools.status (status command, fleet page)",
    "retrain_lib.stats.change_detection": "numpy: adaptation_steps is imported by tools.status (status command, fleet page)",
    "retrain_lib.stats.performance": "pandas: adaptation_steps is imported by tools.status (status command, fleet page)",
    "retrain_lib.pipeline.monitor_run": "pandas: only `retrain monitor` loads it",
    "retrain_lib.pipeline.retrain_run": "pandas: only `retrain retrain` loads it",
    "retrain_lib.pipeline.promotion": "pandas: only `retrain promote` loads it",
    "retrain_lib.stats.drift": "pandas: only `retrain drift` loads it",
    "retrain_lib.stats.feature_selection": "pandas: only `retrain drift --select` loads it",
    "retrain_lib.tools.simulate": "pandas: only `retrain simulate` loads it",
    "retrain_lib.tools.reproduce": "pandas: only `retrain reproduce` loads it",
    "retrain_lib.tools.backtest": "pandas: only `retrain backtest` loads it",
    "retrain_lib.tools.backtest_report": "pandas: only `retrain backtest` loads it",
    "retrain_lib.tools.dry_run": "pandas: only `retrain dry-run` loads it",
    "retrain_lib.tools.threshold_calibration": "pandas: only `retrain calibrate` loads it",
    "retrain_lib.serving.gateway": "SQLAlchemy: only `retrain serve` loads it",
    "retrain_lib.serving.replay": "pandas: only `retrain replay` loads it",
}


@dataclass(frozen=True)
class ImportedName:
    file: Path
    line: int
    module: str
    name: str


def _package_files() -> list[Path]:
    return sorted(p for root in PACKAGES.values() for p in root.rglob("*.py"))


def _source_files() -> list[Path]:
    files = []
    for folder in SOURCE_DIRS:
        files.extend(p for p in (ROOT / folder).rglob("*.py") if ".retrain" not in p.parts)
    return sorted(files)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_file(module: str) -> Path | None:
    top, *rest = module.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def _top_level_names(module: str) -> tuple[frozenset[str], dict[str, str]]:
    """Names a module defines itself, and names it imports (name -> module imported from)."""
    path = _module_file(module)
    assert path is not None, module
    own: set[str] = set()
    imported: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.col_offset == 0:
            own.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.col_offset == 0:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            own.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.ImportFrom) and node.col_offset == 0 and node.module:
            imported.update({a.asname or a.name: node.module for a in node.names})
        elif isinstance(node, ast.Import) and node.col_offset == 0:
            imported.update({a.asname or a.name.split(".")[0]: a.name for a in node.names})
    return frozenset(own), imported


def _project_imports() -> list[ImportedName]:
    found = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                found.extend(ImportedName(path, node.lineno, node.module, a.name) for a in node.names)
    return found


def test_modules_stay_small():
    too_long = {}
    for path in _package_files():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and _rel(path) not in LONG_MODULES:
            too_long[_rel(path)] = lines
    assert not too_long, f"modules above {MAX_MODULE_LINES} lines (split them by concern): {too_long}"


def _function_lengths(path: Path) -> list[tuple[str, int]]:
    """(name, lines) of every function in a file, not counting its docstring."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                length -= first.end_lineno - first.lineno + 1
            out.append((node.name, length))
    return out


def test_functions_stay_short():
    too_long = {}
    for path in _package_files():
        for name, length in _function_lengths(path):
            key = f"{_rel(path)}:{name}"
            if length > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                too_long[key] = length
    assert not too_long, f"functions above {MAX_FUNCTION_LINES} lines: {too_long}"


def test_named_exceptions_are_still_needed():
    """An exception whose module or function has shrunk is removed from the lists."""
    stale = [key for key in LONG_MODULES if len((ROOT / key).read_text().splitlines()) <= MAX_MODULE_LINES]
    for key in LONG_FUNCTIONS:
        path, name = key.split(":")
        lengths = [length for fn, length in _function_lengths(ROOT / path) if fn == name]
        if not lengths or max(lengths) <= MAX_FUNCTION_LINES:
            stale.append(key)
    assert not stale, f"no longer needed, remove from the exceptions: {stale}"


def test_no_private_names_imported_across_modules():
    private = [
        f"{_rel(i.file)}:{i.line} imports {i.module}.{i.name}"
        for i in _project_imports()
        if i.name.startswith("_") and not i.name.startswith("__") and _module_file(f"{i.module}.{i.name}") is None
    ]
    assert not private, "make these names public in their module: " + "; ".join(private)


def test_project_imports_resolve_to_the_defining_module():
    problems = []
    for i in _project_imports():
        if _module_file(i.module) is None:
            problems.append(f"{_rel(i.file)}:{i.line}: no module {i.module}")
            continue
        if _module_file(f"{i.module}.{i.name}") is not None:
            continue  # a submodule
        own, imported = _top_level_names(i.module)
        if i.name in own:
            continue
        if i.name in imported:
            problems.append(
                f"{_rel(i.file)}:{i.line}: {i.module}.{i.name} is a re-export, import it from {imported[i.name]}"
            )
        else:
            problems.append(f"{_rel(i.file)}:{i.line}: {i.module} has no {i.name}")
    assert not problems, "\n".join(problems)


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> project module, for ``from package import module`` and ``import m as x``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for a in node.names:
                if _module_file(f"{node.module}.{a.name}") is not None:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name.split(".")[0] in PACKAGES and _module_file(a.name) is not None:
                    aliases[a.asname] = a.name
    return aliases


def test_module_attributes_resolve():
    """``alerts.DedupeStore`` where ``alerts`` is a project module: the module defines it (a
    name moved to another module fails here, not when a slow test or a task first runs it)."""
    problems = []
    for path in _source_files():
        tree = ast.parse(path.read_text())
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            module = aliases.get(node.value.id)
            if module is None or _module_file(f"{module}.{node.attr}") is not None:
                continue
            own, imported = _top_level_names(module)
            if node.attr not in own and node.attr not in imported:
                problems.append(f"{_rel(path)}:{node.lineno}: {module} has no {node.attr}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    cycles = sorted(
        f"{a} <-> {b}"
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if a < b and b.split(".")[0] in PACKAGES and graph.chain_exists(importer=b, imported=a)
    )
    assert not cycles, f"import cycles: {cycles}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads: ``from package import module`` the
    submodule, ``from module import name`` the module."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level or not node.module:
        return []
    subs = [f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}") is not None]
    return subs if len(subs) == len(node.names) else [node.module, *subs]


def _top_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported (not inside a function, not for TYPE_CHECKING)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(block)

    visit(tree.body)
    return found


@cache
def _heavy_at_import(module: str) -> frozenset[str]:
    """The heavy packages importing ``module`` loads (its top imports, followed through the project)."""
    heavy: set[str] = set()
    for node in _top_imports(ast.parse(_module_file(module).read_text())):
        for name in _imported_modules(node):
            top = name.split(".")[0]
            if top in HEAVY_PACKAGES:
                heavy |= {top, *HEAVY_IMPLIES.get(top, ())}
            elif top in PACKAGES and name != module and _module_file(name) is not None:
                heavy |= _heavy_at_import(name)
    return frozenset(heavy)


def _lazy_own_imports() -> list[tuple[Path, int, str, str]]:
    """``(file, line, importing module, imported module)`` of every ``retrain_lib`` module imported
    inside a function of ``retrain_lib``."""
    found = []

    def visit(node: ast.AST, path: Path, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in _imported_modules(child):
                    if name.split(".")[0] == "retrain_lib":
                        found.append((path, child.lineno, _module_name(path), name))
            visit(child, path, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    for path in sorted(PACKAGES["retrain_lib"].rglob("*.py")):
        visit(ast.parse(path.read_text()), path, False)
    return found


def test_library_imports_its_own_modules_at_the_top():
    """A module of the library imported inside a function hides a dependency until run time; it
    is allowed only for a heavy module (``LAZY_IMPORTS``) that would make the importer heavier."""
    problems = []
    for path, line, importer, imported in _lazy_own_imports():
        where = f"{_rel(path)}:{line} imports {imported} inside a function"
        if imported not in LAZY_IMPORTS:
            problems.append(f"{where}: import it at the top of the module")
        elif not _heavy_at_import(imported) - _heavy_at_import(importer):
            problems.append(
                f"{where}, but {importer} loads {sorted(_heavy_at_import(imported))} already: import it at the top"
            )
    assert not problems, "\n".join(problems)


def test_lazy_imports_are_still_needed():
    """An entry of ``LAZY_IMPORTS`` names a heavy module that some module still imports lazily."""
    used = {imported for *_, imported in _lazy_own_imports()}
    stale = [m for m in LAZY_IMPORTS if _module_file(m) is None or not _heavy_at_import(m) or m not in used]
    assert not stale, f"no longer needed (or not heavy), remove from LAZY_IMPORTS: {stale}"
