"""Estimator classes looked up by reading source, without importing them.

``training.estimator`` in a model config names a class by import path
(``sklearn.ensemble.HistGradientBoostingClassifier``). ``retrain config validate`` and the DAG
factory must check it without importing scikit-learn (5 s cold), so this module finds the
module's file with the import system's path finders (which locate files without executing
any package), parses it with :mod:`ast`, follows ``from x import Name`` re-exports to the
module that defines the class, and reads the class's ``__init__`` parameters and methods,
following base classes it can resolve the same way.

What cannot be decided from source (a compiled module, a class built at run time, a base
class outside the files it can read, ``**kwargs`` in ``__init__``) is left unchecked: the
training task imports the class for real (:func:`retrain_lib.learn.estimator_import.load_estimator_class`)
and reports it then.

>>> info = describe_estimator("sklearn.linear_model.LogisticRegression")
>>> info.name, "max_iter" in info.params
('LogisticRegression', True)
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.machinery
import importlib.util
import json
import os
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from retrain_lib.core.source_cache import SourceCache, file_stamp

__all__ = ["EstimatorInfo", "EstimatorLookupError", "check_estimator", "describe_estimator", "module_allowed"]

# module.Class, no private or dunder part (``sklearn.__class__`` is not an estimator)
IMPORT_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
EXAMPLE = "e.g. 'sklearn.ensemble.RandomForestClassifier'"
_MAX_DEPTH = 12  # re-exports and base classes followed before giving up
_IGNORED_BASES = {"object", "ABC", "Generic", "Protocol"}


class EstimatorLookupError(ValueError):
    """``training.estimator`` does not name a usable class: ``reason`` and ``fix`` say why."""

    def __init__(self, reason: str, fix: str):
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix


@dataclass(frozen=True)
class EstimatorInfo:
    """What the source says about an estimator class.

    ``params`` is None when they cannot be known from source (``**kwargs`` in ``__init__``,
    or no ``__init__`` in the classes that could be read); ``complete`` is False when some
    base class could not be read, so missing methods prove nothing.
    """

    path: str
    name: str
    defined_in: str
    file: str
    line: int
    params: tuple[str, ...] | None
    methods: frozenset[str]
    fit_params: tuple[str, ...] | None
    abstract: bool
    complete: bool


def module_allowed(module: str, allowed_prefixes) -> bool:
    """Whether ``module`` is one of ``allowed_prefixes`` or inside one, by whole components.

    A prefix ``sklearn.`` (or ``sklearn``) admits ``sklearn`` and ``sklearn.ensemble`` but not
    ``sklearnx``; ``mycompany.models.`` admits ``mycompany.models.trees`` but not
    ``mycompany.modelsx``.

    >>> module_allowed("sklearn.ensemble", ["sklearn."]), module_allowed("sklearnx.evil", ["sklearn."])
    (True, False)
    """
    for prefix in allowed_prefixes:
        base = str(prefix).rstrip(".")
        if base and (module == base or module.startswith(base + ".")):
            return True
    return False


def _did_you_mean(word: str, options) -> str:
    match = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


# -----------------------------------------------------------------------------------------
# Finding and reading module files (nothing is imported)
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Module:
    name: str
    file: str | None  # None: found, but not Python source (compiled, namespace package)
    package: str  # the package relative imports start from
    locations: tuple[str, ...]  # submodule search locations when a package


@lru_cache(maxsize=256)
def _find_module(name: str) -> _Module | None:
    """The module ``name``'s file, found by the path finders without importing its parents
    (``importlib.util.find_spec("a.b")`` would import ``a``). None when there is none."""
    parts = name.split(".")
    spec = None
    try:
        # on the path, not in sys.modules: a module of that name imported earlier (another
        # checkout, a test's package) must not stand in for the file the config names
        spec = importlib.machinery.PathFinder.find_spec(parts[0]) or importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), list(spec.submodule_search_locations))
    if spec is None:
        return None
    locations = tuple(spec.submodule_search_locations or ())
    origin = spec.origin if spec.origin and spec.origin.endswith(".py") and os.path.isfile(spec.origin) else None
    return _Module(name, origin, name if locations else name.rpartition(".")[0], locations)


def _submodules(module: _Module) -> list[str]:
    return [m.name for m in pkgutil.iter_modules(list(module.locations)) if not m.name.startswith("_")]


@lru_cache(maxsize=128)
def _parse(file: str, mtime: float) -> ast.Module | None:
    try:
        return ast.parse(Path(file).read_bytes(), filename=file)
    except (OSError, SyntaxError, ValueError):
        return None


# files read by the describe_estimator calls in progress (innermost last), for SourceCache
_READS: list[dict[str, list[int] | None]] = []
_CACHE = SourceCache("estimators")


def _tree(module: _Module) -> ast.Module | None:
    if module.file is None:
        return None
    if _READS:
        _READS[-1][module.file] = file_stamp(module.file)
    try:
        return _parse(module.file, os.stat(module.file).st_mtime)
    except OSError:
        return None


def _top_level(tree: ast.Module):
    """Top-level statements, including those inside ``if``/``try`` blocks (last one wins)."""
    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If | ast.Try):
            nested = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                nested += handler.body
            stack += reversed(nested)
        else:
            yield node


def _absolute(module: _Module, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = module.package.split(".") if module.package else []
    if node.level - 1 > len(base):
        return None
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])]) or None


# A name bound at a module's top level: a class, a function, another module's name, or unknown.
@dataclass(frozen=True)
class _Binding:
    kind: str  # "class", "function", "module", "other", "unknown"
    module: _Module | None = None
    node: ast.AST | None = None
    target: str = ""  # "module": its name; "unknown": the module where the trail was lost


def _lookup(module: _Module, name: str, depth: int = 0) -> _Binding | None:  # noqa: C901 - one branch per AST statement kind
    """What ``name`` is at the top level of ``module``; None when it is not there at all."""
    tree = _tree(module)
    if tree is None or depth > _MAX_DEPTH:
        return _Binding("unknown", target=module.name)
    found = None
    dynamic = False
    for node in _top_level(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            found = _Binding("class", module, node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == name:
                found = _Binding("function", module, node)
            elif node.name == "__getattr__":
                dynamic = True
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    source = _absolute(module, node)
                    sub = _find_module(source) if source else None
                    if sub is not None and (hit := _lookup(sub, name, depth + 1)) is not None:
                        found = hit
                elif (alias.asname or alias.name) == name:
                    found = _follow(module, node, alias.name, depth)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name:
                    found = _Binding("module", target=alias.name)
                elif alias.asname is None and alias.name.split(".")[0] == name:
                    found = _Binding("module", target=name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                value = node.value
                if isinstance(value, ast.Name) and value.id != name:
                    found = _lookup(module, value.id, depth + 1) or _Binding("unknown")
                else:
                    found = _Binding("other", module, node)
    if found is None and dynamic:
        return _Binding("unknown", target=module.name)
    return found


def _follow(module: _Module, node: ast.ImportFrom, name: str, depth: int) -> _Binding:
    source = _absolute(module, node)
    if source is None:
        return _Binding("unknown")
    sub = _find_module(source)
    if sub is None:
        return _Binding("unknown", target=source)
    hit = _lookup(sub, name, depth + 1)
    if hit is None:
        # ``from package import submodule``
        if sub.locations and _find_module(f"{source}.{name}") is not None:
            return _Binding("module", target=f"{source}.{name}")
        return _Binding("unknown", target=source)
    return hit


def _resolve_expr(module: _Module, expr: ast.expr, depth: int) -> _Binding:
    """A base-class expression (``Name`` or ``module.Name``) resolved in ``module``."""
    if isinstance(expr, ast.Subscript):  # Generic[T], Base[...]
        expr = expr.value
    if isinstance(expr, ast.Name):
        return _lookup(module, expr.id, depth) or _Binding("unknown")
    if isinstance(expr, ast.Attribute):
        owner = _resolve_expr(module, expr.value, depth)
        if owner.kind == "module":
            sub = _find_module(owner.target)
            if sub is not None:
                return _lookup(sub, expr.attr, depth + 1) or _Binding("unknown")
    return _Binding("unknown")


# -----------------------------------------------------------------------------------------
# Reading a class
# -----------------------------------------------------------------------------------------


def _is_abstract(fn: ast.AST) -> bool:
    for dec in getattr(fn, "decorator_list", []):
        name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
        if name == "abstractmethod":
            return True
    return False


def _arg_names(fn: ast.FunctionDef | ast.AsyncFunctionDef, *, any_with_kwargs: bool = True) -> tuple[str, ...] | None:
    """Parameter names after ``self``; None with ``**kwargs`` (any name accepted) unless
    ``any_with_kwargs`` is False."""
    a = fn.args
    if a.kwarg is not None and any_with_kwargs:
        return None
    names = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    return tuple(names[1:] if names and names[0] in ("self", "cls") else names)


def _mro(module: _Module, node: ast.ClassDef) -> tuple[list[ast.ClassDef], bool]:
    """The class and the bases that can be read, in an MRO-like depth-first order (each
    once); ``complete`` is False when some base could not be read."""
    order: list[ast.ClassDef] = []
    seen: set[int] = set()
    complete = True

    def visit(mod: _Module, cls: ast.ClassDef, depth: int) -> None:
        nonlocal complete
        if id(cls) in seen:
            return
        seen.add(id(cls))
        order.append(cls)
        if depth > _MAX_DEPTH:
            complete = False
            return
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in _IGNORED_BASES:
                continue
            hit = _resolve_expr(mod, base, depth)
            if hit.kind == "class" and hit.module is not None and isinstance(hit.node, ast.ClassDef):
                visit(hit.module, hit.node, depth + 1)
            else:
                complete = False

    visit(module, node, 0)
    return order, complete


def _describe(path: str, binding: _Binding) -> EstimatorInfo:
    cls, module = binding.node, binding.module
    assert isinstance(cls, ast.ClassDef) and module is not None  # a "class" binding has both
    classes, complete = _mro(module, cls)
    methods: dict[str, ast.AST] = {}
    for c in classes:  # the first definition of a name wins, a class attribute (path = staticmethod(f)) too
        for item in c.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                methods.setdefault(item.name, item)
            elif isinstance(item, ast.Assign | ast.AnnAssign):
                for t in item.targets if isinstance(item, ast.Assign) else [item.target]:
                    if isinstance(t, ast.Name):
                        methods.setdefault(t.id, item)
    init = methods.get("__init__")
    if isinstance(init, ast.FunctionDef | ast.AsyncFunctionDef):
        params = _arg_names(init)
    else:  # object.__init__ takes nothing; an assigned __init__ cannot be read
        params = () if init is None and complete else None
    fit = methods.get("fit")
    # named ones only: ``**fit_params`` routes metadata, it does not weight rows
    fit_params = (
        _arg_names(fit, any_with_kwargs=False) if isinstance(fit, ast.FunctionDef | ast.AsyncFunctionDef) else None
    )
    abstract = any(_is_abstract(fn) for fn in methods.values())
    return EstimatorInfo(
        path=path,
        name=cls.name,
        defined_in=module.name,
        file=module.file or "",
        line=cls.lineno,
        params=params,
        methods=frozenset(methods),
        fit_params=fit_params,
        abstract=abstract,
        complete=complete,
    )


def describe_estimator(path: str, allowed_prefixes=("sklearn.",)) -> EstimatorInfo | None:
    """Look up the class ``path`` names, reading source only.

    Returns None when its source cannot be read (a package not installed here, a compiled
    module, a name bound at run time): nothing can be said before importing it.

    A class whose source was read completely is remembered on disk
    (:class:`retrain_lib.core.source_cache.SourceCache`) while the files read are unchanged:
    the DAG processor parses every model's file in a new process, and reading scikit-learn's
    source takes about 0.25 s each time.

    Raises:
        EstimatorLookupError: the path is malformed, outside ``allowed_prefixes``, names a
            module or a class that does not exist (with a "did you mean"), or something that
            is not a class defined in an allowed module.
    """
    # where the import system finds the top package decides which files are read
    top = _find_module(path.split(".")[0]) if isinstance(path, str) else None
    key = json.dumps([path, list(allowed_prefixes), top.file if top else None, list(top.locations) if top else None])
    cached = _CACHE.get(key)
    if isinstance(cached, dict):
        try:
            return _info_from_json(cached)
        except (KeyError, TypeError, ValueError):
            pass  # an entry of another shape: read the source again
    reads: dict[str, list[int] | None] = {}
    _READS.append(reads)
    try:
        info = _describe_from_source(path, allowed_prefixes)
    finally:
        _READS.pop()
    if info is not None and info.complete and reads:
        _CACHE.put(key, _info_to_json(info), reads)
    return info


def _info_to_json(info: EstimatorInfo) -> dict:
    return {**dataclasses.asdict(info), "methods": sorted(info.methods)}  # tuples are written as lists


def _info_from_json(data: dict) -> EstimatorInfo:
    def as_tuple(value):
        return None if value is None else tuple(value)

    return EstimatorInfo(
        **{
            **data,
            "params": as_tuple(data["params"]),
            "fit_params": as_tuple(data["fit_params"]),
            "methods": frozenset(data["methods"]),
        }
    )


def _describe_from_source(path: str, allowed_prefixes) -> EstimatorInfo | None:
    """:func:`describe_estimator` without the cache."""
    allowed_fix = "use a scikit-learn estimator class, or add its module to allowed_estimator_prefixes in platform.yaml"
    prefixes = list(allowed_prefixes)
    if not isinstance(path, str) or not IMPORT_PATH.fullmatch(path):
        raise EstimatorLookupError(f"{path!r} is not an import path", f"write module.Class, {EXAMPLE}")
    module_name, _, attr = path.rpartition(".")
    if not module_allowed(module_name, prefixes):
        raise EstimatorLookupError(
            f"{path!r} is outside the allowed estimator modules ({', '.join(prefixes)})", allowed_fix
        )
    parts = module_name.split(".")
    if _find_module(parts[0]) is None:
        return None  # not installed here (the workers may have it): the training task will tell
    for i in range(2, len(parts) + 1):
        name = ".".join(parts[:i])
        if _find_module(name) is None:
            parent = _find_module(".".join(parts[: i - 1]))
            hint = _did_you_mean(parts[i - 1], _submodules(parent)) if parent else ""
            raise EstimatorLookupError(
                f"{path!r} cannot be found: there is no module {name!r}{hint}", f"check the spelling, {EXAMPLE}"
            )
    module = _find_module(module_name)
    assert module is not None  # found by the loop above (_find_module is cached)
    binding = _lookup(module, attr)
    if binding is None:
        tree = _tree(module)
        names = [n.name for n in _top_level(tree) if isinstance(n, ast.ClassDef)] if tree else []
        for n in _top_level(tree) if tree else []:
            if isinstance(n, ast.ImportFrom):
                names += [a.asname or a.name for a in n.names if a.name != "*"]
        names = [n for n in names if not n.startswith("_")]
        raise EstimatorLookupError(
            f"{path!r} cannot be found: module {module_name!r} has no {attr!r}{_did_you_mean(attr, names)}",
            f"check the spelling, {EXAMPLE}",
        )
    if binding.kind in ("function", "module", "other"):
        kind = {"function": "a function", "module": "a module", "other": "not a class"}[binding.kind]
        raise EstimatorLookupError(
            f"{path!r} is not a scikit-learn estimator class (it is {kind})", f"name an estimator class, {EXAMPLE}"
        )
    if binding.kind != "class":  # lost in a module that cannot be read: still, where is it?
        if binding.target and not module_allowed(binding.target, prefixes):
            raise EstimatorLookupError(
                f"{path!r} is outside the allowed estimator modules ({', '.join(prefixes)}): "
                f"{module_name} re-exports it from {binding.target}",
                allowed_fix,
            )
        return None
    info = _describe(path, binding)
    if not module_allowed(info.defined_in, prefixes):
        raise EstimatorLookupError(
            f"{path!r} is outside the allowed estimator modules ({', '.join(prefixes)}): it is "
            f"{info.defined_in}.{info.name} re-exported by {module_name}",
            allowed_fix,
        )
    return info


def check_estimator(
    estimator, params=None, allowed_prefixes=("sklearn.",), *, recency: bool = False, warm_start: bool = False
) -> list[tuple[tuple, str, str]]:
    """Problems of ``training.estimator`` / ``training.params`` found by reading source:
    ``(location, reason, fix)`` each, the shape of
    :meth:`retrain_lib.core.config.ModelConfig.cross_field_problems`. Imports nothing.

    Finds an estimator outside the allowed modules, a module or class that does not exist
    (with a "did you mean"), something that is not an estimator class (no ``fit`` and
    ``get_params``, abstract), params its ``__init__`` does not take (one problem per param,
    located at the param, with a "did you mean"), ``recency`` with a ``fit`` without
    ``sample_weight`` and ``warm_start`` without a ``warm_start`` parameter.

    >>> [(loc, reason) for loc, reason, _ in check_estimator(
    ...     "sklearn.ensemble.HistGradientBoostingClassifier", {"max_iters": 10})]
    [(('training', 'params', 'max_iters'), "'max_iters' is not a parameter of HistGradientBoostingClassifier; did you mean 'max_iter'?")]
    """
    try:
        info = describe_estimator(estimator, allowed_prefixes)
    except EstimatorLookupError as exc:
        return [(("training", "estimator"), exc.reason, exc.fix)]
    if info is None:
        return []
    problems: list[tuple[tuple, str, str]] = []
    where = f"{info.defined_in}.{info.name}"
    missing = [m for m in ("fit", "get_params") if m not in info.methods]
    if info.complete and missing:
        problems.append(
            (
                ("training", "estimator"),
                f"{estimator!r} is not a scikit-learn estimator class ({where} has no {'/'.join(missing)})",
                f"name an estimator class, {EXAMPLE}",
            )
        )
        return problems
    if info.abstract:
        problems.append(
            (
                ("training", "estimator"),
                f"{estimator!r} is not a scikit-learn estimator class ({where} is abstract)",
                f"name a concrete estimator class, {EXAMPLE}",
            )
        )
        return problems
    if info.params is not None and isinstance(params, dict):
        accepted = [p for p in info.params if not p.startswith("_")]
        for name in params:
            if name not in info.params:
                problems.append(
                    (
                        ("training", "params", name),
                        f"{name!r} is not a parameter of {info.name}{_did_you_mean(str(name), accepted)}",
                        f"use some of: {', '.join(sorted(accepted))}",
                    )
                )
    if recency and info.fit_params is not None and "sample_weight" not in info.fit_params:
        problems.append(
            (
                ("training", "recency"),
                f"{info.name}.fit does not accept sample_weight, so recent rows cannot weigh more",
                "remove recency or use an estimator whose fit takes sample_weight",
            )
        )
    if warm_start and info.params is not None and "warm_start" not in info.params:
        problems.append(
            (
                ("training", "warm_start"),
                f"{info.name} has no warm_start parameter",
                "remove warm_start or use an estimator that has one (e.g. HistGradientBoostingClassifier, "
                "RandomForestClassifier)",
            )
        )
    return problems
