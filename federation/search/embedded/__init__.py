"""The embedded backend: immutable Parquet generations queried in-process with DuckDB.

- `store`: the generations on disk behind an atomically replaced manifest, and their writer.
- `snapshot`: the one read-only DuckDB file per published state that the publisher builds
  and every server process opens.
- `sql`: filter trees and questions compiled to DuckDB SQL.
- `backend`: `EmbeddedBackend`, which opens the published snapshot and answers from it,
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
