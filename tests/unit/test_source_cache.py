"""The on-disk cache of estimator lookups (``retrain_lib.core.source_cache`` used by
``retrain_lib.core.estimators``): a later process reads the answer without parsing source,
any change to a file the answer was read from invalidates it, and a broken or unwritable
cache never turns into an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from retrain_lib.core import estimators
from retrain_lib.core.estimators import describe_estimator
from retrain_lib.core.source_cache import SourceCache


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A package ``cache_models`` whose class takes its params from a base in another file."""
    root = tmp_path / "src" / "cache_models"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("from .impl import Model\n")
    (root / "base.py").write_text(
        textwrap.dedent("""
        class Base:
            def get_params(self, deep=True):
                return {}

            def fit(self, X, y, sample_weight=None):
                return self
        """)
    )
    (root / "impl.py").write_text(
        textwrap.dedent("""
        from .base import Base

        class Model(Base):
            def __init__(self, alpha=1.0):
                self.alpha = alpha
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setenv("RETRAIN_CACHE_DIR", str(tmp_path / "cache"))
    _fresh_process_state(monkeypatch)
    yield root
    estimators._find_module.cache_clear()


def _fresh_process_state(monkeypatch):
    """What a new DAG-parsing process starts with: no in-process caches."""
    estimators._find_module.cache_clear()
    estimators._parse.cache_clear()
    monkeypatch.setattr(estimators, "_CACHE", SourceCache("estimators"))


def _count_parses(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = estimators.ast.parse

    def counting(source, filename="<unknown>", *args, **kwargs):
        seen.append(filename)
        return real(source, filename, *args, **kwargs)

    monkeypatch.setattr(estimators.ast, "parse", counting)
    return seen


PREFIXES = ["cache_models."]


def test_a_new_process_reads_the_answer_without_parsing_source(pkg, tmp_path, monkeypatch):
    first = describe_estimator("cache_models.Model", PREFIXES)
    assert first is not None and first.params == ("alpha",) and first.complete
    stored = json.loads((tmp_path / "cache" / "estimators.json").read_text())
    [entry] = stored.values()
    assert set(entry["files"]) == {str(pkg / "__init__.py"), str(pkg / "impl.py"), str(pkg / "base.py")}

    _fresh_process_state(monkeypatch)
    parsed = _count_parses(monkeypatch)
    again = describe_estimator("cache_models.Model", PREFIXES)
    assert again == first and parsed == []


@pytest.mark.parametrize("changed", ["impl.py", "base.py"])
def test_a_changed_source_file_is_read_again(pkg, monkeypatch, changed):
    assert describe_estimator("cache_models.Model", PREFIXES).params == ("alpha",)
    path = pkg / changed
    if changed == "impl.py":
        path.write_text(path.read_text().replace("alpha=1.0):", "alpha=1.0, beta=2):"))
    else:
        path.write_text(path.read_text().replace("def fit(self, X, y, sample_weight=None)", "def fit(self, X, y)"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000_000))
    _fresh_process_state(monkeypatch)
    parsed = _count_parses(monkeypatch)
    info = describe_estimator("cache_models.Model", PREFIXES)
    assert str(path) in parsed
    if changed == "impl.py":
        assert info.params == ("alpha", "beta")
    else:
        assert info.fit_params == ("X", "y")


def test_a_corrupt_cache_is_ignored_and_rewritten(pkg, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "estimators.json"
    cache.parent.mkdir()
    cache.write_text("{not json")
    assert describe_estimator("cache_models.Model", PREFIXES).params == ("alpha",)
    assert len(json.loads(cache.read_text())) == 1
    # an entry of another shape under the right key is read from source again
    data = json.loads(cache.read_text())
    for entry in data.values():
        entry["value"] = {"path": "x"}
    cache.write_text(json.dumps(data))
    _fresh_process_state(monkeypatch)
    parsed = _count_parses(monkeypatch)
    assert describe_estimator("cache_models.Model", PREFIXES).params == ("alpha",)
    assert parsed


def test_off_or_unwritable_means_no_cache_and_no_error(pkg, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRAIN_CACHE_DIR", "off")
    _fresh_process_state(monkeypatch)
    assert describe_estimator("cache_models.Model", PREFIXES).params == ("alpha",)
    assert not (tmp_path / "cache").exists()

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory would be")
    monkeypatch.setenv("RETRAIN_CACHE_DIR", str(blocked / "sub"))
    _fresh_process_state(monkeypatch)
    assert describe_estimator("cache_models.Model", PREFIXES).params == ("alpha",)


def test_another_import_path_does_not_share_entries(pkg, tmp_path, monkeypatch):
    """The same estimator path on another sys.path (another environment) may be other files."""
    describe_estimator("cache_models.Model", PREFIXES)
    other = tmp_path / "other" / "cache_models"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text(
        "class Model:\n    def __init__(self, gamma=0):\n        pass\n    def fit(self, X, y):\n        return self\n"
        "    def get_params(self, deep=True):\n        return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "other"))
    _fresh_process_state(monkeypatch)
    assert describe_estimator("cache_models.Model", PREFIXES).params == ("gamma",)


def test_processes_share_the_cache(pkg, tmp_path):
    """Two real interpreter processes: the second finds the first one's entry."""
    code = textwrap.dedent("""
        import sys, json
        from retrain_lib.core import estimators
        parsed = []
        real = estimators.ast.parse
        estimators.ast.parse = lambda src, filename="<unknown>", *a, **k: parsed.append(filename) or real(src, filename, *a, **k)
        info = estimators.describe_estimator("cache_models.Model", ["cache_models."])
        print(json.dumps({"params": list(info.params), "parsed": len(parsed)}))
    """)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), *sys.path]),
        "RETRAIN_CACHE_DIR": str(tmp_path / "cache"),
    }
    runs = [
        json.loads(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        )
        for _ in range(2)
    ]
    assert runs[0]["params"] == runs[1]["params"] == ["alpha"]
    assert runs[0]["parsed"] == 3 and runs[1]["parsed"] == 0
