"""The engine backend: Elasticsearch or OpenSearch behind one query compiler and result reader.

One module per job (docs/engine.md has the reasoning and the numbers):

- `layout`: index and alias names, document kinds and ids, the mappings in schema/engine/.
- `compiler`: filter trees and questions to query DSL; `results`: responses back to cells.
- `bulk`: documents as JSON and bounded bulk payloads.
- `locks`: one sync per biobank across hosts, a lease on a lock document.
- `admin`: the index administration the writer needs (names, schema, aliases, locks, retries).
- `writer`: a generation built as a new index and published by an alias swap.
- `backend`: `EngineBackend`, the `SearchBackend` for both engines; `config`: its settings.
- `client`: the only module importing `elasticsearch` / `opensearchpy`, one adapter per client.
"""

from __future__ import annotations

from federation.search.backend import ChangeOutcome
from federation.search.engine.backend import EngineBackend
from federation.search.engine.client import EngineError, EngineUnavailable
from federation.search.engine.config import EngineConfig
from federation.search.engine.layout import IndexNames, biobank_key
from federation.search.engine.locks import BiobankLockHeld, BiobankLockLost

__all__ = [
    "BiobankLockHeld",
    "BiobankLockLost",
    "ChangeOutcome",
    "EngineBackend",
    "EngineConfig",
    "EngineError",
    "EngineUnavailable",
    "IndexNames",
    "biobank_key",
]
