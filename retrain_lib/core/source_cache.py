"""A small on-disk cache of facts read from source files, valid while those files are unchanged.

Airflow's DAG processor parses each DAG file in a process of its own, so an in-process cache
(``functools.lru_cache``) starts empty for every model's file. Reading an estimator class's
parameters from scikit-learn's source (:mod:`retrain_lib.core.estimators`) means parsing a
few large modules with :mod:`ast`: about 0.25 s, paid again by every file's process. This
cache keeps the answer in one JSON file shared by those processes; an entry holds the files
it was read from with their size and modification time, and is used only while every one of
them is unchanged.

Location: ``$RETRAIN_CACHE_DIR`` or ``$XDG_CACHE_HOME/retrain`` (default ``~/.cache/retrain``).
``RETRAIN_CACHE_DIR=off`` turns it off. It is only a cache: a missing, unreadable, corrupt or
read-only file costs the work it saves and never an error. Writes replace the file atomically
(several parsing processes may write at once; the last one wins, and a lost entry is read again
next time).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["MAX_ENTRIES", "SourceCache", "cache_dir", "file_stamp"]

_VERSION = 1
MAX_ENTRIES = 512
# entries are valid for this interpreter only (see SourceCache)
_SCOPE = hashlib.sha256(json.dumps([_VERSION, sys.prefix, sys.version]).encode()).hexdigest()[:16]


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is off (``RETRAIN_CACHE_DIR=off``)."""
    configured = os.environ.get("RETRAIN_CACHE_DIR")
    if configured:
        return None if configured.lower() in ("off", "0", "none") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "retrain"


def file_stamp(file: str) -> list[int] | None:
    """``[size, mtime_ns]`` of ``file``, or None when it cannot be read."""
    try:
        st = os.stat(file)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class SourceCache:
    """Entries ``key -> value`` (JSON values), each valid while its files are unchanged.

    Keys are scoped to the interpreter (``sys.prefix``, ``sys.version``); a caller whose answer
    depends on where the import system finds things puts that in its key. At most
    :data:`MAX_ENTRIES` are kept (the oldest written go first).
    """

    def __init__(self, name: str):
        self.name = name
        self._entries: dict[str, Any] | None = None

    def _path(self) -> Path | None:
        directory = cache_dir()
        return None if directory is None else directory / f"{self.name}.json"

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            path = self._path()
            if path is not None:
                try:
                    data = json.loads(path.read_text())
                    if isinstance(data, dict):
                        self._entries = data
                except (OSError, ValueError):
                    pass
        return self._entries

    @staticmethod
    def _key(key: str) -> str:
        return f"{_SCOPE}:{key}"

    def get(self, key: str) -> Any | None:
        """The value stored for ``key`` if every file it was read from is unchanged, else None."""
        entry = self._load().get(self._key(key))
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            return None
        for file, stamp in entry["files"].items():
            if stamp is None or file_stamp(file) != stamp:
                return None
        return entry.get("value")

    def put(self, key: str, value: Any, files: dict[str, list[int] | None]) -> None:
        """Store ``value`` for ``key``, read from ``files`` (``file -> stamp when read``)."""
        if any(stamp is None for stamp in files.values()):
            return  # read from a file that cannot be stamped: nothing to validate it against
        entries = self._load()
        entries.pop(self._key(key), None)  # re-inserted last: the newest
        entries[self._key(key)] = {"value": value, "files": files}
        path = self._path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # merge with what other processes wrote since this one loaded the file
            try:
                on_disk = json.loads(path.read_text())
                if isinstance(on_disk, dict):
                    entries = {**on_disk, **entries}
            except (OSError, ValueError):
                pass
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
            fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(entries, out)
                os.chmod(tmp, 0o644)  # mkstemp makes it 0600; other users' processes may read it
                os.replace(tmp, path)
            except (OSError, TypeError, ValueError):
                Path(tmp).unlink(missing_ok=True)
                return
            self._entries = entries
        except OSError:
            pass
