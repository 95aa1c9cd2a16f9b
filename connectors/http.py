"""Fetching pages for the HTTP connectors: a live server, or a folder of recorded pages.

Every HTTP connector reads through a `PageSource` made by `open_source(base_url, ...)`:

- `http://` or `https://`: a `requests.Session` with connect and read timeouts, retries
  with exponential backoff and jitter on 5xx, connection errors, timeouts, truncated or
  malformed bodies, and 429 (honouring `Retry-After`); 401 and 403 are fatal at once (a
  wrong credential does not get better by asking again), other 4xx are fatal too.
- a local folder (a path or `file://`): recorded pages, the responses a server gave to the
  requests a full read makes, one file per request (`recorded_name`). The demo network is
  written this way, so it needs no server; a recording can only be read whole, so sources
  recorded on disk always run full syncs.

Errors are `SourceError`s naming the URL and the HTTP status; every message and log line
goes through `scrub`, which removes the connector's secret values, so a token echoed back
by a server in an error body never reaches a log, the sync history or a client.
"""

from __future__ import annotations

import abc
import datetime as dt
import email.utils
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from marshmallow import Schema, fields, validate

from federation.sync.connector import Connector, SourceError

log = logging.getLogger(__name__)

# How long one request may take to connect and to receive the next byte, in seconds.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 1.0  # first retry after about this many seconds, doubling each time
MAX_BACKOFF = 60.0
# A Retry-After longer than this is a maintenance window, not a hiccup: fail the run and
# let the next scheduled one try.
MAX_RETRY_AFTER = 300.0
# How much of an error response body a message quotes.
ERROR_BODY_CHARS = 200
USER_AGENT = "biofed-sync/0.1 (+https://github.com/biobank-federation)"
REDACTED = "***"


class HttpOptions(Schema):
    """Connection options every HTTP connector accepts (mixed into its config schema)."""

    base_url = fields.String(
        required=True,
        metadata={"description": "the server's base URL, or a folder of recorded pages"},
    )
    token = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"secret": True, "description": "bearer token (write `${ENV_VAR}`)"},
    )
    api_key = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"secret": True, "description": "API key sent in `api_key_header`"},
    )
    api_key_header = fields.String(
        load_default="X-API-Key", metadata={"description": "the header `api_key` is sent in"}
    )
    username = fields.String(
        load_default=None, allow_none=True, metadata={"description": "basic auth user"}
    )
    password = fields.String(
        load_default=None, allow_none=True, metadata={"secret": True, "description": "basic auth"}
    )
    headers = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "extra request headers"},
    )
    connect_timeout = fields.Float(
        load_default=DEFAULT_CONNECT_TIMEOUT,
        validate=validate.Range(min=0, min_inclusive=False),
        metadata={"description": "seconds to connect"},
    )
    read_timeout = fields.Float(
        load_default=DEFAULT_READ_TIMEOUT,
        validate=validate.Range(min=0, min_inclusive=False),
        metadata={"description": "seconds to wait for the next byte"},
    )
    retries = fields.Integer(
        load_default=DEFAULT_RETRIES,
        validate=validate.Range(0, 20),
        metadata={"description": "retries on 5xx, 429, timeouts and cut or malformed bodies"},
    )
    backoff = fields.Float(
        load_default=DEFAULT_BACKOFF,
        validate=validate.Range(min=0),
        metadata={"description": "seconds before the first retry, doubling each time"},
    )
    max_backoff = fields.Float(
        load_default=MAX_BACKOFF,
        validate=validate.Range(min=0),
        metadata={"description": "longest pause between retries"},
    )
    max_retry_after = fields.Float(
        load_default=MAX_RETRY_AFTER,
        validate=validate.Range(min=0),
        metadata={"description": "a longer Retry-After fails the run instead of waiting"},
    )


@dataclass(frozen=True)
class Page:
    """One response: the parsed body (JSON, or text when asked), headers and where from."""

    body: Any
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def link(self, relation: str) -> str | None:
        """The target of a `Link` header with `rel="<relation>"` (RFC 8288), if any."""
        header = self.headers.get("Link") or self.headers.get("link")
        if not header:
            return None
        for part in _split_links(header):
            target, _, params = part.partition(";")
            rels = [
                p.split("=", 1)[1].strip().strip('"')
                for p in params.split(";")
                if p.strip().lower().startswith("rel=")
            ]
            if any(relation in r.split() for r in rels):
                return target.strip().lstrip("<").rstrip(">")
        return None


def _split_links(header: str) -> list[str]:
    """Split a Link header on the commas between links, not those inside <...>."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in header:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (and its URL-encoded form) replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, REDACTED)
            quoted = urllib.parse.quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, REDACTED)
    return text


class _ScrubSecrets(logging.Filter):
    """Scrub live sources' secrets from log records of the HTTP libraries below us.

    urllib3 logs each request line at DEBUG, query string included: a secret a source
    configured into a URL must not reach the log through it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, int] = {}  # secret -> number of open sources holding it

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = scrub(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_SCRUBBER = _ScrubSecrets()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_SCRUBBER)


class PageSource(abc.ABC):
    """Where an HTTP connector's pages come from."""

    recorded = False

    def __init__(self, base_url: str, secrets: Iterable[str] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        self.secrets = tuple(secrets)

    @abc.abstractmethod
    def get(
        self, target: str, params: Mapping[str, Any] | None = None, *, text: bool = False
    ) -> Page:
        """GET `target` (relative to the base URL, or absolute under it)."""

    def post(self, target: str, body: Mapping[str, Any]) -> Page:
        """POST a JSON body (GraphQL APIs); JSON back."""
        raise SourceError(f"{self.base_url} is a recording: it cannot answer POST", retriable=False)

    def close(self) -> None:  # noqa: B027 - optional hook: recordings hold no connections
        """Release connections."""

    def error(self, message: str, *, retriable: bool, status: int | None = None) -> SourceError:
        return SourceError(scrub(message, self.secrets), retriable=retriable, status=status)


class HttpSource(PageSource):
    """A live server through one `requests.Session`, with timeouts, retries and backoff."""

    def __init__(self, base_url: str, options: Mapping[str, Any], secrets: Iterable[str]) -> None:
        super().__init__(base_url, secrets)
        self.options = options
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        self.session.headers.update(options.get("headers") or {})
        if options.get("token"):
            self.session.headers["Authorization"] = f"Bearer {options['token']}"
        if options.get("api_key"):
            self.session.headers[options.get("api_key_header") or "X-API-Key"] = options["api_key"]
        if options.get("username"):
            self.session.auth = (options["username"], options.get("password") or "")
        self.timeout = (
            float(options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
            float(options.get("read_timeout", DEFAULT_READ_TIMEOUT)),
        )
        self.retries = int(options.get("retries", DEFAULT_RETRIES))
        self.backoff = float(options.get("backoff", DEFAULT_BACKOFF))
        self.max_backoff = float(options.get("max_backoff", MAX_BACKOFF))
        self.max_retry_after = float(options.get("max_retry_after", MAX_RETRY_AFTER))
        self.requests_made = 0
        for secret in self.secrets:
            _SCRUBBER.secrets[secret] = _SCRUBBER.secrets.get(secret, 0) + 1

    def url(self, target: str) -> str:
        """A target resolved as a link on the base URL is (`/x` from the host, `x` below)."""
        return urllib.parse.urljoin(f"{self.base_url}/", target)

    def get(
        self, target: str, params: Mapping[str, Any] | None = None, *, text: bool = False
    ) -> Page:
        return self._request("GET", self.url(target), params=params, text=text)

    def post(self, target: str, body: Mapping[str, Any]) -> Page:
        return self._request("POST", self.url(target), body=body)

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        text: bool = False,
    ) -> Page:
        shown = scrub(_with_query(url, params), self.secrets)
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                log.info(
                    "retrying %s %s (attempt %d): %s", method, shown, attempt + 1, last_problem
                )
            self.requests_made += 1
            try:
                response = self.session.request(
                    method, url, params=params, json=body, timeout=self.timeout
                )
                content = response.content  # read it all now: a cut body raises here
            except requests.Timeout:
                last_problem = f"timed out after {self.timeout[0]:g}s/{self.timeout[1]:g}s"
                self._pause(attempt, None)
                continue
            except requests.RequestException as err:
                last_problem = f"connection failed ({type(err).__name__})"
                self._pause(attempt, None)
                continue
            status = response.status_code
            if status in (401, 403):
                raise self.error(
                    f"{method} {shown}: HTTP {status}: the source refused our credentials "
                    "(check the connector's token, api_key or password)",
                    retriable=False,
                    status=status,
                )
            if status == 429 or status >= 500:
                last_problem = f"HTTP {status}"
                wait = _retry_after(response.headers.get("Retry-After"))
                if wait is not None and wait > self.max_retry_after:
                    raise self.error(
                        f"{method} {shown}: HTTP {status} with Retry-After {wait:g}s, longer "
                        f"than the {self.max_retry_after:g}s this connector waits",
                        retriable=True,
                    )
                self._pause(attempt, wait)
                continue
            if status >= 400:
                raise self.error(
                    f"{method} {shown}: HTTP {status}: {_snippet(content)}",
                    retriable=False,
                    status=status,
                )
            if text:
                return Page(content.decode(response.encoding or "utf-8", errors="replace"), shown)
            try:
                parsed = json.loads(content)
            except json.JSONDecodeError as err:
                # A cut or garbled page may be the network's doing: ask again, then give up.
                last_problem = f"the body is not JSON ({err.msg} at char {err.pos})"
                self._pause(attempt, None)
                continue
            except UnicodeDecodeError as err:
                # Garbled bytes too: retried like a cut page, and named with the URL if the
                # source keeps sending them.
                bad = content[err.start : err.start + 1].hex()
                last_problem = f"the body is not UTF-8 (byte 0x{bad} at {err.start})"
                self._pause(attempt, None)
                continue
            return Page(parsed, shown, dict(response.headers))
        raise self.error(
            f"{method} {shown}: gave up after {self.retries + 1} attempts: {last_problem}",
            retriable=True,
        )

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        if attempt >= self.retries:
            return
        if retry_after is not None:
            delay = retry_after
        else:
            # Full jitter on an exponential step, so many syncs retrying together spread out.
            step = min(self.max_backoff, self.backoff * 2**attempt)
            delay = step * (0.5 + random.random() / 2)
        time.sleep(delay)

    def close(self) -> None:
        self.session.close()
        for secret in self.secrets:
            left = _SCRUBBER.secrets.get(secret, 0) - 1
            if left > 0:
                _SCRUBBER.secrets[secret] = left
            else:
                _SCRUBBER.secrets.pop(secret, None)


class RecordedSource(PageSource):
    """A folder of recorded responses: one JSON (or CSV) file per request URL."""

    recorded = True

    def __init__(self, folder: Path, secrets: Iterable[str] = ()) -> None:
        super().__init__(str(folder), secrets)
        self.folder = folder

    def get(
        self, target: str, params: Mapping[str, Any] | None = None, *, text: bool = False
    ) -> Page:
        relative = _relative(target, self.base_url)
        path = self.folder / recorded_name(_with_query(relative, params))
        if not path.is_file():
            raise self.error(
                f"no recorded page for {_with_query(relative, params)} in {self.folder} "
                f"(expected {path.name})",
                retriable=False,
            )
        content = path.read_bytes()
        if text:
            return Page(content.decode("utf-8-sig"), str(path))
        try:
            return Page(json.loads(content), str(path))
        except json.JSONDecodeError as err:
            raise self.error(
                f"{path}: not JSON ({err.msg} at char {err.pos})", retriable=False
            ) from None


def open_source(
    base_url: str, options: Mapping[str, Any], *, base_dir: str, secrets: Iterable[str]
) -> PageSource:
    """A live HTTP source, or recorded pages when `base_url` is a folder."""
    if base_url.startswith(("http://", "https://")):
        return HttpSource(base_url, options, secrets)
    path = Path(base_url.removeprefix("file://"))
    if not path.is_absolute():
        path = Path(base_dir) / path
    return RecordedSource(path, secrets)


def recorded_name(relative_url: str) -> str:
    """The file a recording keeps the response to `relative_url` in.

    `Specimen` -> `Specimen.json`; `Specimen?_sort=x&_count=50` ->
    `Specimen/_count=50&_sort=x.json` (query parameters sorted, values percent-encoded).
    A recorder and a reader call this same function, so they always agree.
    """
    path, _, query = relative_url.lstrip("/").partition("?")
    path = path.strip("/") or "index"
    if not query:
        return path if path.endswith((".json", ".csv")) else f"{path}.json"
    pairs = sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
    encoded = "&".join(
        f"{urllib.parse.quote(k, safe='_:.')}={urllib.parse.quote(v, safe='_:.,-')}"
        for k, v in pairs
    )
    return f"{path}/{encoded}.json"


def _with_query(url: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return url
    query = urllib.parse.urlencode([(k, str(v)) for k, v in params.items() if v is not None])
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


def _relative(target: str, base: str) -> str:
    """A link as a path under the recording's base (recorded links are relative)."""
    if target.startswith(("http://", "https://")):
        parsed = urllib.parse.urlsplit(target)
        return parsed.path.lstrip("/") + (f"?{parsed.query}" if parsed.query else "")
    return target.removeprefix(base).lstrip("/")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _snippet(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text[:ERROR_BODY_CHARS] + ("..." if len(text) > ERROR_BODY_CHARS else "")


class HttpConnector(Connector):
    """Base of the connectors that read pages: opens the source on first use, closes it."""

    resumable = True
    _source: PageSource | None = None

    @property
    def source(self) -> PageSource:
        if self._source is None:
            self._source = open_source(
                str(self.config["base_url"]),
                self.config,
                base_dir=self.base_dir,
                secrets=self.secret_values(),
            )
        return self._source

    def incremental(self) -> bool:
        """A recording can only be read whole; a live server can be asked for changes."""
        return super().incremental() and not self.source.recorded

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


def dig(value: Any, path: str) -> Any:
    """The value at a dotted path (`subject.reference`, `codes[].id`, `items[0].x`).

    `name[]` maps the rest of the path over a list and flattens; a missing step gives None.
    """
    if not path:
        return value
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        items = value.get(head[:-2]) if isinstance(value, Mapping) else None
        if items is None:
            return None
        if not isinstance(items, list):
            items = [items]
        out: list[Any] = []
        for item in items:
            found = dig(item, rest)
            if isinstance(found, list):
                out.extend(found)
            elif found is not None:
                out.append(found)
        return out
    index = None
    if head.endswith("]") and "[" in head:
        head, _, number = head[:-1].partition("[")
        index = int(number) if number.isdigit() else None
    found = value.get(head) if isinstance(value, Mapping) else None
    if index is not None:
        found = found[index] if isinstance(found, list) and index < len(found) else None
    return dig(found, rest) if rest else found


def later(a: str | None, b: str | None) -> str | None:
    """The later of two timestamps, compared as instants (text order fails across offsets)."""
    if a is None or b is None:
        return a or b
    try:
        return a if _instant(a) >= _instant(b) else b
    except ValueError:
        return max(a, b)


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
