"""Real HTTP servers on 127.0.0.1 that play a FHIR server, a Beacon, a REST API, the Directory.

Each runs `http.server` in a thread over an in-memory store that a test edits between syncs
(add, change, delete records), and can be told to misbehave: answer 429 with Retry-After,
500s, 401s, cut a page short or send malformed JSON. Every request is logged with its
headers, so tests can check what a connector asked for.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Json = None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Json, status: int = 200, **headers: str) -> Reply:
        return cls(
            status, json.dumps(value).encode(), {"Content-Type": "application/json", **headers}
        )


Fault = Callable[[Request], Reply | None]


class LoopbackServer:
    """A threaded HTTP server answering through `app`, with scripted faults first."""

    def __init__(self, app: Callable[[Request], Reply]) -> None:
        self.app = app
        self.requests: list[Request] = []
        self.faults: collections.deque[Fault] = collections.deque()
        self.always: Fault | None = None  # applied to every request while set
        self.required_token: str | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self, method: str) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Request(
                    method,
                    parsed.path,
                    dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
                    {k: v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                outer.requests.append(request)
                reply = outer._reply(request)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                declared = reply.headers.get("X-Declared-Length")
                self.send_header("Content-Length", declared or str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _reply(self, request: Request) -> Reply:
        expected = f"Bearer {self.required_token}"
        if self.required_token is not None and request.headers.get("Authorization") != expected:
            # Some servers echo what they were sent: a connector must not pass it on.
            sent = request.headers.get("Authorization", "")
            return Reply.json({"error": f"invalid credentials: {sent}"}, 401)
        if self.always is not None and (reply := self.always(request)) is not None:
            return reply
        while self.faults:
            fault = self.faults.popleft()
            if (reply := fault(request)) is not None:
                return reply
        return self.app(request)

    def start(self) -> LoopbackServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, *replies: Reply) -> None:
        for reply in replies:
            self.faults.append(lambda _request, r=reply: r)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


@contextmanager
def serving(app: Callable[[Request], Reply]) -> Iterator[LoopbackServer]:
    server = LoopbackServer(app).start()
    try:
        yield server
    finally:
        server.stop()


# --- misbehaviour -----------------------------------------------------------------------


def too_many_requests(retry_after: str = "1") -> Reply:
    return Reply.json({"error": "slow down"}, 429, **{"Retry-After": retry_after})


def server_error() -> Reply:
    return Reply.json({"error": "internal"}, 500)


def cut_short(reply: Reply) -> Reply:
    """A reply that announces more bytes than it sends (a dropped connection)."""
    return Reply(
        reply.status,
        reply.body[: len(reply.body) // 2],
        {
            **reply.headers,
            "X-Declared-Length": str(len(reply.body)),
        },
    )


def malformed_json() -> Reply:
    return Reply(
        200, b'{"resourceType": "Bundle", "entry": [', {"Content-Type": "application/json"}
    )


# --- a FHIR server ------------------------------------------------------------------------


def instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FhirStore:
    """Resources by type and id, with versions, lastUpdated stamps and a history of deletes."""

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
        self.deleted: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        self.clock = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def tick(self) -> str:
        self.clock += dt.timedelta(seconds=1)
        return instant(self.clock)

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        stored = json.loads(json.dumps(resource))
        meta = stored.setdefault("meta", {})
        meta["lastUpdated"] = self.tick()
        meta["versionId"] = str(int(meta.get("versionId", "0")) + 1)
        self.resources[stored["resourceType"]][stored["id"]] = stored
        return stored

    def delete(self, resource_type: str, ident: str) -> None:
        del self.resources[resource_type][ident]
        self.deleted[resource_type].append((ident, self.tick()))


class FhirApp:
    """FHIR R4 search over a FhirStore: _count, _lastUpdated=ge, _sort, _revinclude, _id,
    offset paging through `next` links, and `<Type>/_history?_since=` with DELETE entries."""

    def __init__(self, store: FhirStore, prefix: str = "/fhir") -> None:
        self.store = store
        self.prefix = prefix

    def __call__(self, request: Request) -> Reply:
        path = request.path.removeprefix(self.prefix).strip("/")
        if path.endswith("/_history"):
            return Reply.json(self._history(path.split("/")[0], request.query))
        return Reply.json(self._search(path, request.query))

    def _search(self, resource_type: str, query: dict[str, str]) -> dict[str, Any]:
        matches = list(self.store.resources[resource_type].values())
        if "_lastUpdated" in query:
            since = _parse(query["_lastUpdated"].removeprefix("ge"))
            matches = [r for r in matches if _parse(r["meta"]["lastUpdated"]) >= since]
        if "_id" in query:
            wanted = set(query["_id"].split(","))
            matches = [r for r in matches if r["id"] in wanted]
        matches.sort(key=lambda r: (r["meta"]["lastUpdated"], r["id"]))
        count = int(query.get("_count", 50))
        offset = int(query.get("_offset", 0))
        page = matches[offset : offset + count]
        entries = [{"resource": r, "search": {"mode": "match"}} for r in page]
        if query.get("_revinclude") == "Condition:subject":
            ids = {f"Patient/{r['id']}" for r in page}
            for condition in self.store.resources["Condition"].values():
                if condition.get("subject", {}).get("reference") in ids:
                    entries.append({"resource": condition, "search": {"mode": "include"}})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": entries,
            "link": [
                {"relation": "self", "url": f"{resource_type}?{urllib.parse.urlencode(query)}"}
            ],
        }
        if offset + count < len(matches):
            following = {**query, "_offset": str(offset + count)}
            bundle["link"].append(
                {"relation": "next", "url": f"{resource_type}?{urllib.parse.urlencode(following)}"}
            )
        return bundle

    def _history(self, resource_type: str, query: dict[str, str]) -> dict[str, Any]:
        since = _parse(query["_since"])
        entries = [
            {"request": {"method": "DELETE", "url": f"{resource_type}/{ident}"}}
            for ident, when in reversed(self.store.deleted[resource_type])
            if _parse(when) >= since
        ]
        return {"resourceType": "Bundle", "type": "history", "entry": entries}


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- a Beacon v2 ------------------------------------------------------------------------


class BeaconApp:
    """Beacon v2 `/datasets`, `/individuals`, `/biosamples` at record level, skip/limit.

    `skip` counts pages as the Beacon v2 framework says (`skip * limit` records skipped,
    as the reference implementation does), or records (`skip_counts="records"`, as some
    servers in the wild do); `announce_total=False` leaves `numTotalResults` out.
    """

    def __init__(
        self,
        datasets: list[dict[str, Any]],
        individuals: list[dict[str, Any]],
        biosamples: list[dict[str, Any]],
        prefix: str = "/api",
        *,
        skip_counts: str = "pages",
        announce_total: bool = True,
    ) -> None:
        self.data = {"datasets": datasets, "individuals": individuals, "biosamples": biosamples}
        self.prefix = prefix
        self.skip_counts = skip_counts
        self.announce_total = announce_total

    def __call__(self, request: Request) -> Reply:
        endpoint = request.path.removeprefix(self.prefix).strip("/")
        records = self.data[endpoint]
        skip, limit = int(request.query.get("skip", 0)), int(request.query.get("limit", 10))
        first = skip * limit if self.skip_counts == "pages" else skip
        page = records[first : first + limit]
        meta = {"beaconId": "test.beacon", "apiVersion": "v2.0", "returnedGranularity": "record"}
        summary: dict[str, Any] = {"exists": bool(records)}
        if self.announce_total:
            summary["numTotalResults"] = len(records)
        if endpoint == "datasets":
            return Reply.json(
                {"meta": meta, "responseSummary": summary, "response": {"collections": page}}
            )
        by_dataset: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for record in page:
            by_dataset[str(record.get("datasetId", "default"))].append(record)
        sets = [
            {"id": d, "setType": "dataset", "exists": True, "resultsCount": len(r), "results": r}
            for d, r in by_dataset.items()
        ]
        return Reply.json(
            {"meta": meta, "responseSummary": summary, "response": {"resultSets": sets}}
        )


# --- a generic REST API -------------------------------------------------------------------


class RestApp:
    """Lists under `/api/<stream>` with page, offset, cursor or Link paging, `updated_since`,
    and soft-deleted records (`deleted: true`) kept as tombstones."""

    def __init__(self, style: str, size_param: str = "per_page") -> None:
        self.style = style
        self.size_param = size_param
        self.records: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
        self.clock = 0

    def put(self, stream: str, record: dict[str, Any]) -> None:
        self.clock += 1
        self.records[stream][record["id"]] = {
            **record,
            "updated_at": f"2026-02-01T00:00:{self.clock:02d}Z",
        }

    def soft_delete(self, stream: str, ident: str) -> None:
        self.clock += 1
        self.records[stream][ident] = {
            "id": ident,
            "deleted": True,
            "updated_at": f"2026-02-01T00:00:{self.clock:02d}Z",
        }

    def __call__(self, request: Request) -> Reply:
        stream = request.path.removeprefix("/api/").strip("/")
        rows = sorted(self.records[stream].values(), key=lambda r: (r["updated_at"], r["id"]))
        if "updated_since" in request.query:
            rows = [r for r in rows if r["updated_at"] >= request.query["updated_since"]]
        else:
            rows = [r for r in rows if not r.get("deleted")]
        size = int(request.query.get(self.size_param) or request.query.get("limit") or 10)
        if self.style == "page":
            start = (int(request.query.get("page", 1)) - 1) * size
        elif self.style == "offset":
            start = int(request.query.get("offset", 0))
        else:
            start = int(request.query.get("cursor") or request.query.get("after") or 0)
        page = rows[start : start + size]
        body: dict[str, Any] = {"data": page, "meta": {"total": len(rows)}}
        headers: dict[str, str] = {}
        more = start + size < len(rows)
        if self.style == "cursor":
            body["meta"]["next"] = str(start + size) if more else None
        if self.style == "link" and more:
            query = {**request.query, "after": str(start + size)}
            headers["Link"] = f'<{request.path}?{urllib.parse.urlencode(query)}>; rel="next"'
        return Reply.json(body, **headers)


# --- the Directory (EMX2) -----------------------------------------------------------------


class DirectoryApp:
    """EMX2's CSV export (`/ERIC/directory/api/csv/Collections`) and GraphQL (limit/offset)."""

    def __init__(self, csv_text: str) -> None:
        self.rows = list(csv.DictReader(io.StringIO(csv_text)))

    def __call__(self, request: Request) -> Reply:
        if request.path.endswith("/api/csv/Collections"):
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
            return Reply(200, out.getvalue().encode(), {"Content-Type": "text/csv"})
        if request.path.endswith("/graphql"):
            variables = (request.body or {}).get("variables") or {}
            offset, limit = int(variables.get("offset", 0)), int(variables.get("limit", 100))
            page = [directory_graphql_row(r) for r in self.rows[offset : offset + limit]]
            return Reply.json(
                {"data": {"Collections": page, "Collections_agg": {"count": len(self.rows)}}}
            )
        return Reply.json({"error": "not found"}, 404)


# EMX2 column kinds of the Directory's Collections table (molgenis.csv), as GraphQL shows them.
DIRECTORY_ONTOLOGY_ARRAYS = (
    "type",
    "data_categories",
    "data_use",
    "materials",
    "diagnosis_available",
    "sex",
    "storage_temperatures",
)
DIRECTORY_ONTOLOGIES = ("country", "age_unit")
DIRECTORY_INTS = ("size", "number_of_donors", "age_low", "age_high")


def directory_graphql_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV export row as EMX2 GraphQL answers it: ontology arrays as [{name}], an ontology
    as {name}, ints as numbers, refs as {id}; empty values as null (or [])."""
    out: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "withdrawn": row["withdrawn"] == "true",
        "biobank": {"id": row["biobank"]},
    }
    for name in DIRECTORY_ONTOLOGY_ARRAYS:
        out[name] = [{"name": t} for t in row.get(name, "").split(",") if t]
    for name in DIRECTORY_ONTOLOGIES:
        out[name] = {"name": row[name]} if row.get(name) else None
    for name in DIRECTORY_INTS:
        out[name] = int(row[name]) if row.get(name) else None
    return out
