"""The conformance suite on the embedded (DuckDB over Parquet) backend."""

from tests.search.conformance import BackendConformance


class TestEmbeddedBackend(BackendConformance):
    """`federation` from tests/conftest.py is built on the embedded backend by default."""
