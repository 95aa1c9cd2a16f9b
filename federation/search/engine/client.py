"""The one module that imports `elasticsearch` and `opensearchpy`: one small adapter per client.

Both clients speak nearly the same REST API, but their constructors, keyword names and
exceptions differ, and the Elasticsearch client refuses to talk to OpenSearch. Each
adapter turns the calls the engine backend needs into its client's calls and every
client exception into one of the few errors below, so `federation.search.engine` (the
query compiler, result reader, generation writer and lock) is written once.

The client packages are imported when an adapter is built, not with this module, so an
installation without the optional `engine` extra still runs the embedded backend.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from federation.errors import FederationError
from federation.search.backend import BackendUnavailable

# Statuses that mean "the engine cannot serve now" rather than "the request is wrong":
# overloaded (429), gateway errors and no shard available (5xx).
_UNAVAILABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Credentials refused: the engine is unusable until an operator fixes the settings.
_REFUSED_STATUSES = frozenset({401, 403})


class EngineUnavailable(BackendUnavailable, ConnectionError):
    """The engine is down, unreachable, overloaded or refusing our credentials.

    It is also a `ConnectionError` (an `OSError`) on purpose: the sync layer records an
    `OSError` as a failed run, so an engine outage fails the run cleanly.
    """

    code = "ENGINE_UNAVAILABLE"
    error_code = "ENGINE_UNAVAILABLE"


class PartialAnswer(EngineUnavailable):
    """Some shards behind the searched alias did not answer (not started, recovering)."""


class EngineError(FederationError, RuntimeError):
    """The engine rejected a request it should have accepted: a bug or a setup mistake."""

    code = "ENGINE_ERROR"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineNotFound(EngineError):
    """404: the index, alias or document does not exist."""


class EngineConflict(EngineError):
    """409: a document exists already, or its version or sequence number moved on."""


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the engine: URLs, credentials, TLS, and this client's timeout/retries."""

    urls: tuple[str, ...]
    username: str = ""
    password: str = ""
    api_key: str = ""
    verify_certs: bool = True
    ca_certs: Path | None = None
    timeout: float = 3.0
    retries: int = 1
    # Retrying a timed-out request doubles the wait: worth it for bulk loads, not searches.
    retry_on_timeout: bool = False
    # Connections kept per node: one per thread that may call at once (gunicorn threads,
    # bulk requests in flight plus the lock renewer).
    pool_size: int = 8


@dataclass(frozen=True)
class Written:
    """The outcome of one document of a bulk request."""

    id: str
    status: int
    error: str | None


class EngineClient(abc.ABC):
    """The engine calls the backend makes, the same for every client."""

    distribution: ClassVar[str]
    # The client library's object: calls that read the same in both libraries live here.
    _client: Any

    @abc.abstractmethod
    def __init__(self, options: ClientOptions) -> None:
        """Build the client; no request is sent until the first call."""

    @abc.abstractmethod
    def _translated(self) -> contextlib.AbstractContextManager[None]:
        """Turn the library's exceptions into EngineUnavailable / EngineError."""

    def info(self) -> dict[str, Any]:
        """The root endpoint: cluster name and version (distribution, number)."""
        with self._translated():
            return dict(self._client.info())

    def health(self) -> str:
        """Cluster health status: green, yellow or red."""
        with self._translated():
            return str(self._client.cluster.health()["status"])

    def index_health(self, pattern: str) -> dict[str, str]:
        """Health (green, yellow, red) of each index behind a name or alias."""
        with self._translated():
            found = self._client.cluster.health(index=pattern, level="indices")
        return {str(k): str(v["status"]) for k, v in (found.get("indices") or {}).items()}

    @abc.abstractmethod
    def msearch(self, searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """Run (index, body) searches in one round trip; a missing index answers empty."""

    @abc.abstractmethod
    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One search; a missing index answers empty."""

    @abc.abstractmethod
    def count(self, index: str, body: Mapping[str, Any]) -> int:
        """How many documents match."""

    @abc.abstractmethod
    def bulk(self, payload: bytes, *, refresh: bool = False) -> list[Written]:
        """Send an NDJSON bulk payload; the outcome of each action, in order."""

    @abc.abstractmethod
    def create_index(self, name: str, body: Mapping[str, Any]) -> None:
        """Create an index with settings and mappings."""

    @abc.abstractmethod
    def delete_indices(self, names: Sequence[str]) -> None:
        """Delete indices by exact name (missing ones are ignored)."""

    @abc.abstractmethod
    def put_settings(self, index: str, settings: Mapping[str, Any]) -> None:
        """Change dynamic index settings."""

    @abc.abstractmethod
    def put_meta(self, index: str, meta: Mapping[str, Any]) -> None:
        """Replace the `_meta` of an index's mapping."""

    def refresh(self, index: str) -> None:
        """Make everything written so far searchable."""
        with self._translated():
            self._client.indices.refresh(index=index)

    def flush(self, index: str) -> None:
        """Commit everything written so far to disk (it then survives a crash of the node)."""
        with self._translated():
            self._client.indices.flush(index=index)

    @abc.abstractmethod
    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """Apply alias actions in one atomic cluster-state change."""

    def aliases(self, pattern: str) -> dict[str, set[str]]:
        """Indices matching a name, alias or wildcard, each with its aliases ({} if none)."""
        try:
            with self._translated():
                response = self._client.indices.get_alias(index=pattern)
        except EngineNotFound:
            return {}
        return {name: set(entry.get("aliases", {})) for name, entry in response.items()}

    def mappings(self, index: str) -> dict[str, dict[str, Any]]:
        """Mapping per concrete index behind a name or alias ({} if none)."""
        try:
            with self._translated():
                response = self._client.indices.get_mapping(index=index)
        except EngineNotFound:
            return {}
        return {name: dict(entry["mappings"]) for name, entry in response.items()}

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """A document with `_source`, `_seq_no` and `_primary_term`, or None."""
        try:
            with self._translated():
                return dict(self._client.get(index=index, id=doc_id))
        except EngineNotFound:
            return None

    @abc.abstractmethod
    def put(
        self,
        index: str,
        doc_id: str,
        document: Mapping[str, Any],
        *,
        create: bool = False,
        if_version: tuple[int, int] | None = None,
        refresh: bool = False,
    ) -> tuple[int, int]:
        """Index a document (create-only, or conditional on `if_version`, the sequence
        number and primary term of the version it replaces).

        Returns the new (seq_no, primary_term); raises EngineConflict when the condition fails.
        """

    @abc.abstractmethod
    def delete(
        self,
        index: str,
        doc_id: str,
        *,
        if_version: tuple[int, int] | None = None,
    ) -> None:
        """Delete a document, conditional on its sequence number when given."""

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


# Engines quote the offending value in a rejection's reason (Elasticsearch quotes a preview
# of a whole field); past this length the quote is cut, saying how much was cut.
_REASON_CHARS = 500


def _reason(error: Mapping[str, Any]) -> str:
    """`type: reason`, then the cause's: Elasticsearch puts the root cause (e.g. an immense
    term) only in `caused_by`, under a generic "failed to parse field"."""
    reason = str(error.get("reason"))
    if len(reason) > _REASON_CHARS:
        reason = f"{reason[:_REASON_CHARS]}... ({len(reason) - _REASON_CHARS} characters cut)"
    text = f"{error.get('type')}: {reason}"
    cause = error.get("caused_by")
    if isinstance(cause, Mapping):
        text += f" (caused by {_reason(cause)})"
    return text


def _written(items: Sequence[Mapping[str, Any]]) -> list[Written]:
    out = []
    for item in items:
        ((_, result),) = item.items()
        error = result.get("error")
        if isinstance(error, Mapping):
            error = _reason(error)
        out.append(Written(str(result.get("_id")), int(result.get("status", 0)), error))
    return out


def _search_params() -> dict[str, str]:
    # Before a biobank is published the read alias does not exist: that is an empty
    # network, not an error. A partial answer is never one.
    return {
        "ignore_unavailable": "true",
        "allow_no_indices": "true",
        "allow_partial_search_results": "false",
    }


def _msearch_payload(searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    lines: list[Mapping[str, Any]] = []
    for index, body in searches:
        lines.append(
            {
                "index": index,
                "ignore_unavailable": True,
                "allow_no_indices": True,
                # A count from some shards only would look exact and be wrong.
                "allow_partial_search_results": False,
            }
        )
        lines.append(body)
    return lines


def _msearch_responses(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in response["responses"]:
        error = item.get("error")
        if error is not None:
            status = int(item.get("status", 500))
            reason = error.get("reason") if isinstance(error, Mapping) else error
            if status in _UNAVAILABLE_STATUSES:
                raise EngineUnavailable(f"engine search failed ({status}): {reason}")
            raise EngineError(f"engine rejected a search ({status}): {reason}", status)
        out.append(_whole(item))
    return out


def _whole(response: Mapping[str, Any]) -> dict[str, Any]:
    """The response, unless some shards did not answer: then the engine is unavailable.

    A shard that is not started (a node recovering after a restart) is neither successful
    nor failed: only `successful < total` shows that its documents are missing.
    """
    shards = response.get("_shards") or {}
    total, successful = int(shards.get("total", 0)), int(shards.get("successful", 0))
    if shards.get("failed") or response.get("timed_out") or successful < total:
        raise PartialAnswer(
            f"engine answered from {successful} of {total} shards "
            f"({int(shards.get('failed', 0))} failed)"
        )
    return dict(response)


def _by_status(status: int | None, message: str) -> Exception:
    if status is None or status in _UNAVAILABLE_STATUSES:
        return EngineUnavailable(message)
    if status in _REFUSED_STATUSES:
        return EngineUnavailable(f"the engine refused our credentials: {message}")
    if status == 404:
        return EngineNotFound(message, status)
    if status == 409:
        return EngineConflict(message, status)
    return EngineError(message, status)


class OpenSearchClient(EngineClient):
    """OpenSearch 2.x / 3.x through `opensearch-py`."""

    distribution = "opensearch"

    def __init__(self, options: ClientOptions) -> None:
        from opensearchpy import OpenSearch

        if options.api_key:
            raise ValueError(
                "engine_api_key: OpenSearch has no API keys; use engine_username and "
                "BIOFED_ENGINE_PASSWORD"
            )
        kwargs: dict[str, Any] = {
            "hosts": list(options.urls),
            "timeout": options.timeout,
            "max_retries": options.retries,
            "retry_on_timeout": options.retry_on_timeout,
            "verify_certs": options.verify_certs,
            # The client warns on every request when verification is off; the operator
            # chose it in the settings, where docs/engine.md says what it costs.
            "ssl_show_warn": options.verify_certs,
            "pool_maxsize": options.pool_size,
        }
        if options.ca_certs is not None:
            kwargs["ca_certs"] = str(options.ca_certs)
        if options.username:
            kwargs["http_auth"] = (options.username, options.password)
        self._client = OpenSearch(**kwargs)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        from opensearchpy import exceptions as os_errors

        try:
            yield
        except os_errors.ConnectionError as err:  # includes timeouts and TLS failures
            raise EngineUnavailable(f"engine unreachable: {err}") from None
        except os_errors.TransportError as err:
            status = err.status_code if isinstance(err.status_code, int) else None
            raise _by_status(status, f"{err.error}: {err.info}") from None

    def msearch(self, searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        with self._translated():
            response = self._client.msearch(body=_msearch_payload(searches))
        return _msearch_responses(response)

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._translated():
            response = self._client.search(index=index, body=body, params=_search_params())
        return _whole(response)

    def count(self, index: str, body: Mapping[str, Any]) -> int:
        with self._translated():
            return int(self._client.count(index=index, body=body)["count"])

    def bulk(self, payload: bytes, *, refresh: bool = False) -> list[Written]:
        with self._translated():
            params = {"refresh": "true"} if refresh else {}
            response = self._client.bulk(body=payload, params=params)
        return _written(response["items"])

    def create_index(self, name: str, body: Mapping[str, Any]) -> None:
        with self._translated():
            self._client.indices.create(index=name, body=body)

    def delete_indices(self, names: Sequence[str]) -> None:
        if names:
            with self._translated():
                self._client.indices.delete(
                    index=",".join(names), params={"ignore_unavailable": "true"}
                )

    def put_settings(self, index: str, settings: Mapping[str, Any]) -> None:
        with self._translated():
            self._client.indices.put_settings(index=index, body=settings)

    def put_meta(self, index: str, meta: Mapping[str, Any]) -> None:
        with self._translated():
            self._client.indices.put_mapping(index=index, body={"_meta": meta})

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        with self._translated():
            self._client.indices.update_aliases(body={"actions": list(actions)})

    def put(
        self,
        index: str,
        doc_id: str,
        document: Mapping[str, Any],
        *,
        create: bool = False,
        if_version: tuple[int, int] | None = None,
        refresh: bool = False,
    ) -> tuple[int, int]:
        params: dict[str, Any] = {}
        if create:
            params["op_type"] = "create"
        if if_version is not None:
            params["if_seq_no"], params["if_primary_term"] = if_version
        if refresh:
            params["refresh"] = "true"
        with self._translated():
            result = self._client.index(index=index, id=doc_id, body=document, params=params)
        return int(result["_seq_no"]), int(result["_primary_term"])

    def delete(
        self,
        index: str,
        doc_id: str,
        *,
        if_version: tuple[int, int] | None = None,
    ) -> None:
        params: dict[str, Any] = {}
        if if_version is not None:
            params["if_seq_no"], params["if_primary_term"] = if_version
        with self._translated():
            self._client.delete(index=index, id=doc_id, params=params)


class ElasticsearchClient(EngineClient):
    """Elasticsearch 8.x / 9.x through `elasticsearch` (8.x client, compatible with 9)."""

    distribution = "elasticsearch"

    def __init__(self, options: ClientOptions) -> None:
        from elasticsearch import Elasticsearch

        kwargs: dict[str, Any] = {
            "hosts": list(options.urls),
            "request_timeout": options.timeout,
            "max_retries": options.retries,
            "retry_on_timeout": options.retry_on_timeout,
            "verify_certs": options.verify_certs,
            "ssl_show_warn": options.verify_certs,
            "connections_per_node": options.pool_size,
        }
        if options.ca_certs is not None:
            kwargs["ca_certs"] = str(options.ca_certs)
        if options.api_key:
            kwargs["api_key"] = options.api_key
        elif options.username:
            kwargs["basic_auth"] = (options.username, options.password)
        self._client = Elasticsearch(**kwargs)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        import elastic_transport
        from elasticsearch import ApiError, UnsupportedProductError

        try:
            yield
        except UnsupportedProductError as err:
            raise EngineError(
                f"{err}; for OpenSearch set backend: opensearch (the Elasticsearch client "
                "refuses to talk to it)"
            ) from None
        except elastic_transport.TransportError as err:  # connection, timeout, TLS
            raise EngineUnavailable(f"engine unreachable: {err}") from None
        except ApiError as err:
            raise _by_status(err.meta.status, f"{err.message}: {err.info}") from None

    def msearch(self, searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        with self._translated():
            response = self._client.msearch(searches=_msearch_payload(searches))
        return _msearch_responses(response.body)

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._translated():
            response = self._client.search(
                index=index,
                body=dict(body),
                ignore_unavailable=True,
                allow_no_indices=True,
                allow_partial_search_results=False,
            )
        return _whole(response.body)

    def count(self, index: str, body: Mapping[str, Any]) -> int:
        with self._translated():
            return int(self._client.count(index=index, body=dict(body))["count"])

    def bulk(self, payload: bytes, *, refresh: bool = False) -> list[Written]:
        with self._translated():
            # The client sends a bytes body as it is (its NDJSON serializer passes bytes
            # through), which keeps the payload sizes the backend chose.
            response = self._client.bulk(body=payload, refresh=refresh)
        return _written(response["items"])

    def create_index(self, name: str, body: Mapping[str, Any]) -> None:
        with self._translated():
            self._client.indices.create(index=name, body=dict(body))

    def delete_indices(self, names: Sequence[str]) -> None:
        if names:
            with self._translated():
                self._client.indices.delete(index=list(names), ignore_unavailable=True)

    def put_settings(self, index: str, settings: Mapping[str, Any]) -> None:
        with self._translated():
            self._client.indices.put_settings(index=index, settings=dict(settings))

    def put_meta(self, index: str, meta: Mapping[str, Any]) -> None:
        with self._translated():
            self._client.indices.put_mapping(index=index, meta=dict(meta))

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        with self._translated():
            self._client.indices.update_aliases(actions=[dict(a) for a in actions])

    def put(
        self,
        index: str,
        doc_id: str,
        document: Mapping[str, Any],
        *,
        create: bool = False,
        if_version: tuple[int, int] | None = None,
        refresh: bool = False,
    ) -> tuple[int, int]:
        kwargs: dict[str, Any] = {}
        if create:
            kwargs["op_type"] = "create"
        if if_version is not None:
            kwargs["if_seq_no"], kwargs["if_primary_term"] = if_version
        if refresh:
            kwargs["refresh"] = True
        with self._translated():
            result = self._client.index(index=index, id=doc_id, document=dict(document), **kwargs)
        return int(result["_seq_no"]), int(result["_primary_term"])

    def delete(
        self,
        index: str,
        doc_id: str,
        *,
        if_version: tuple[int, int] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if if_version is not None:
            kwargs["if_seq_no"], kwargs["if_primary_term"] = if_version
        with self._translated():
            self._client.delete(index=index, id=doc_id, **kwargs)


ADAPTERS: dict[str, type[EngineClient]] = {
    OpenSearchClient.distribution: OpenSearchClient,
    ElasticsearchClient.distribution: ElasticsearchClient,
}


def connect(distribution: str, options: ClientOptions) -> EngineClient:
    """An adapter for `distribution` (the `backend` setting); no request is sent yet."""
    try:
        adapter = ADAPTERS[distribution]
    except KeyError:
        raise ValueError(f"backend: {distribution!r} is not elasticsearch or opensearch") from None
    try:
        return adapter(options)
    except ImportError as err:
        raise ValueError(
            f"backend {distribution}: its client is not installed ({err.name}); "
            "install the `engine` extra: pip install 'biobank-federation[engine]'"
        ) from None
