"""The house rules a newcomer relies on, checked on the source tree.

- one concern per module: no module above ``MAX_MODULE_LINES`` lines, no function above
  ``MAX_FUNCTION_LINES`` (its docstring not counted) (the exceptions are named below, each with its reason);
- no private name (``_x``) imported from another module: a name another module needs is public;
- every import of a project name resolves to the module that defines it (lazy imports inside
  functions included, which a refactoring would otherwise break only at run time), with no
  re-exports to hide where a name lives, and every ``module.name`` of a project module too;
- no import cycle inside or between the project's packages.

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
