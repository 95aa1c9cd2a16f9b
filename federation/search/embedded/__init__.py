"""The embedded backend: immutable Parquet generations queried in-process with DuckDB.

- `store`: the generations on disk behind an atomically replaced manifest, and their writer.
- `sql`: filter trees and questions compiled to DuckDB SQL.
- `backend`: `EmbeddedBackend`, which loads the published generations and answers from them,
  with its per-process `AnswerCache`.
"""

from __future__ import annotations

from federation.search.embedded.backend import AnswerCache, EmbeddedBackend
from federation.search.embedded.sql import compile_where, summary_sql, to_sql
from federation.search.embedded.store import (
    MANIFEST,
    EmbeddedStore,
    ParquetGenerationWriter,
)

__all__ = [
    "MANIFEST",
    "AnswerCache",
    "EmbeddedBackend",
    "EmbeddedStore",
    "ParquetGenerationWriter",
    "compile_where",
    "summary_sql",
    "to_sql",
]
