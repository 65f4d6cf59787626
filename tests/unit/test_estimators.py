"""Estimator lookup by reading source (``retrain_lib.core.estimators``): agrees with the imported
classes (golden values from ``inspect`` on scikit-learn itself), names misspellings, and
imports nothing."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import textwrap

import pytest

from retrain_lib.core import estimators
from retrain_lib.core.estimators import check_estimator, describe_estimator

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"


def _public_path(cls) -> str | None:
    """The shortest public module path that exports ``cls`` (as a config would name it)."""
    parts = cls.__module__.split(".")
    for i in range(2, len(parts) + 1):
        name = ".".join(parts[:i])
        if any(p.startswith("_") for p in parts[1:i]):
            break
        if getattr(importlib.import_module(name), cls.__name__, None) is cls:
            return f"{name}.{cls.__name__}"
    return None


def _sklearn_estimators():
    pytest.importorskip("sklearn")
    from sklearn.utils import all_estimators

    return [(path, cls) for _, cls in all_estimators() if (path := _public_path(cls))]


def test_agrees_with_the_imported_class_for_every_sklearn_estimator():
    """Parameters, ``fit(sample_weight)`` and abstractness as ``inspect`` sees them on the real
    classes: a parameter the source reading missed would reject a valid config."""
    from retrain_lib.learn.estimator_import import accepts_sample_weight

    estimators = _sklearn_estimators()
    assert len(estimators) > 150
    wrong = []
    for path, cls in estimators:
        info = describe_estimator(path)
        sig = inspect.signature(cls.__init__).parameters
        params = {k for k, p in sig.items() if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        got = (
            None
            if info is None
            else (set(info.params or ()), info.abstract, "sample_weight" in (info.fit_params or ()))
        )
        if got != (params, inspect.isabstract(cls), accepts_sample_weight(cls)):
            wrong.append((path, got))
        elif check_estimator(path, dict.fromkeys(params, 1)):
            wrong.append((path, check_estimator(path, dict.fromkeys(params, 1))))
    assert wrong == []


def test_a_misspelt_class_module_or_param_gets_a_did_you_mean():
    [(loc, reason, fix)] = check_estimator("sklearn.ensemble.HistGradientBoostingClasifier", {})
    assert loc == ("training", "estimator")
    assert reason.endswith(
        "module 'sklearn.ensemble' has no 'HistGradientBoostingClasifier'; "
        "did you mean 'HistGradientBoostingClassifier'?"
    )
    [(loc, reason, _)] = check_estimator("sklearn.ensembl.RandomForestClassifier", {})
    assert (
        loc == ("training", "estimator") and "there is no module 'sklearn.ensembl'; did you mean 'ensemble'?" in reason
    )
    problems = check_estimator(HGB, {"max_iters": 100, "learning_rate": 0.1, "colour": "red"})
    assert [(loc, reason) for loc, reason, _ in problems] == [
        (
            ("training", "params", "max_iters"),
            "'max_iters' is not a parameter of HistGradientBoostingClassifier; did you mean 'max_iter'?",
        ),
        (("training", "params", "colour"), "'colour' is not a parameter of HistGradientBoostingClassifier"),
    ]
    assert "max_leaf_nodes" in problems[0][2]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("sklearn.utils.all_estimators", "is not a scikit-learn estimator class (it is a function)"),
        ("sklearn.base.defaultdict", "outside the allowed estimator modules (sklearn.): sklearn.base re-exports it"),
        ("sklearn.base.BaseEstimator", "(sklearn.base.BaseEstimator has no fit)"),
        ("sklearn.linear_model.LinearRegressionX", "did you mean 'LinearRegression'?"),
        ("sklearnx.evil.Model", "is outside the allowed estimator modules (sklearn.)"),
    ],
)
def test_refuses_what_is_not_an_allowed_estimator_class(path, expected):
    [(loc, reason, _)] = check_estimator(path, {})
    assert loc == ("training", "estimator") and expected in reason


def test_recency_and_warm_start_need_what_the_class_offers():
    problems = dict(
        (loc[-1], reason)
        for loc, reason, _ in check_estimator(
            "sklearn.neighbors.KNeighborsClassifier", {}, recency=True, warm_start=True
        )
    )
    assert problems == {
        "recency": "KNeighborsClassifier.fit does not accept sample_weight, so recent rows cannot weigh more",
        "warm_start": "KNeighborsClassifier has no warm_start parameter",
    }
    assert check_estimator(HGB, {}, recency=True, warm_start=True) == []


@pytest.fixture
def acme(tmp_path, monkeypatch):
    """A package of our own: a re-export by relative import, a base class with the
    ``__init__``, keyword-only params, ``**kwargs``, and a base from a module that cannot be read."""
    pkg = tmp_path / "acme_models"
    (pkg / "_impl").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from ._impl.trees import Forest, Loose, Opaque\nfrom . import _impl\n")
    (pkg / "_impl" / "__init__.py").write_text("")
    (pkg / "_impl" / "base.py").write_text(
        textwrap.dedent("""\
        from abc import ABC, abstractmethod

        class Estimator(ABC):
            def get_params(self, deep=True):
                return {}

            @abstractmethod
            def fit(self, X, y):
                ...

        class Sized(Estimator):
            def __init__(self, n_trees=10, *, depth=None, seed=0):
                self.n_trees, self.depth, self.seed = n_trees, depth, seed
        """)
    )
    (pkg / "_impl" / "trees.py").write_text(
        textwrap.dedent("""\
        from acme_models._impl import base
        from .base import Sized
        from missing_runtime_lib import Mystery

        class Forest(Sized):
            def fit(self, X, y, sample_weight=None):
                return self

        class Loose(base.Estimator):
            def __init__(self, **kwargs):
                self.kwargs = kwargs

            def fit(self, X, y):
                return self

        class Opaque(Mystery):
            pass
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    estimators._find_module.cache_clear()  # each test has its own acme_models
    yield ["acme_models."]
    estimators._find_module.cache_clear()


def test_follows_relative_re_exports_and_base_classes(acme):
    info = describe_estimator("acme_models.Forest", acme)
    assert (info.defined_in, info.line, info.params) == ("acme_models._impl.trees", 5, ("n_trees", "depth", "seed"))
    assert info.fit_params == ("X", "y", "sample_weight") and not info.abstract and info.complete
    [(loc, reason, _)] = check_estimator("acme_models.Forest", {"n_tree": 3, "depth": 2}, acme, recency=True)
    assert loc == ("training", "params", "n_tree") and reason.endswith("did you mean 'n_trees'?")


def test_leaves_unchecked_what_source_cannot_tell(acme):
    # **kwargs takes any name; a base from an unreadable module may define fit/get_params
    assert check_estimator("acme_models.Loose", {"anything": 1}, acme) == []
    assert describe_estimator("acme_models.Opaque", acme).complete is False
    assert check_estimator("acme_models.Opaque", {"anything": 1}, acme) == []
    # a package that is not installed here (the workers may have it)
    assert check_estimator("xgboost_not_here.XGBClassifier", {"x": 1}, ["xgboost_not_here."]) == []


def test_an_imported_module_of_the_same_name_does_not_stand_in_for_the_file(acme, tmp_path, monkeypatch):
    # another test (or another checkout) imported a different acme_models earlier
    stale = tmp_path / "elsewhere" / "acme_models"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text("class Other:\n    pass\n")
    spec = importlib.util.spec_from_file_location(
        "acme_models", stale / "__init__.py", submodule_search_locations=[str(stale)]
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "acme_models", module)
    estimators._find_module.cache_clear()
    assert describe_estimator("acme_models.Forest", acme).defined_in == "acme_models._impl.trees"


def test_abstract_class_is_refused(acme, tmp_path):
    with open(tmp_path / "acme_models" / "__init__.py", "a") as f:
        f.write("from ._impl.base import Sized\n")
    [(loc, reason, _)] = check_estimator("acme_models.Sized", {}, acme)
    assert "acme_models._impl.base.Sized is abstract" in reason


def test_imports_nothing():
    code = textwrap.dedent(f"""\
        import json, sys
        from retrain_lib.core.estimators import check_estimator
        problems = check_estimator({HGB!r}, {{"max_iters": 1}}, recency=True, warm_start=True)
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "numpy", "scipy", "pandas"}})
        print(json.dumps({{"problems": len(problems), "heavy": heavy}}))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == {"problems": 1, "heavy": []}
