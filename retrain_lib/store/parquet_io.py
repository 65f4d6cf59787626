"""Reading parquet without handing pyarrow a Python file object.

``pandas.read_parquet`` opens a local path itself and passes pyarrow the open Python file.
pyarrow's reader threads can then outlive the read, and at interpreter exit they abort the
process (SIGABRT, "terminate called without an active exception") or hang it
(apache/arrow#34314, #50482). A short-lived command such as ``retrain drift`` that printed
its answer then died with -6. Reading through pyarrow with a path string, or with an
in-memory ``BufferReader``, keeps the read inside pyarrow's own file system layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def read_parquet(source: str | Path | bytes, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The parquet file at ``source`` (a local path, or the file's bytes) as a DataFrame, as
    ``pandas.read_parquet`` would give it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = pa.BufferReader(source) if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    return pq.read_table(src, columns=list(columns) if columns is not None else None).to_pandas()
