"""Generic paged REST JSON: any API that lists collections, donors and samples as JSON.

Everything source-specific is declared in the config, so a new LIMS API needs a network
file entry, not code:

```yaml
connector:
  type: rest
  options:
    base_url: https://lims.example.org/api/v1
    token: ${LIMS_TOKEN}                # secret: from the environment
    paging: {style: cursor, size: 200, cursor_param: cursor, cursor_field: meta.next}
    records: data                       # where the list is in each response ("" = the body)
    streams:
      collections: {path: studies, fields: {id: code, name: title, types: kinds}}
      donors: {path: subjects, fields: {id: ref, sex: gender, diagnoses: "conditions[].icd10"},
               values: {sex: {f: FEMALE, m: MALE}}}
      samples:
        path: specimens
        fields: {id: id, donor_id: subject.ref, collection_id: study, material_type: type}
        replication_key: updated_at     # field holding the record's last change
        since_param: updated_since      # query parameter asking for changes since a bookmark
        deleted_field: deleted          # a record with this field true is a tombstone
```

Paging styles: `page` (`page_param`, `size_param`, `first_page`), `offset` (`offset_param`,
`limit_param`), `cursor` (`cursor_param`; the next cursor at `cursor_field` in the body; none
means the end) and `link` (the `Link: <...>; rel="next"` header). Page and offset paging
end at a page shorter than `size`; when `total_field` names the announced total, a short
page before it is an error (the page was cut), and so is a whole read (any style) whose
record count differs from the total on its last page. `fields` maps canonical field -> dotted
path (`a.b`, `a[0].b`, `list[].b`); list fields take JSON arrays or `list_separator`-joined
text; `values` recodes source values per canonical field, as the tabular connector does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from connectors.http import HttpConnector, HttpOptions, Page, dig, later
from connectors.mapping import CodeMapper, CodeMappingOptions, map_fields
from federation.sync.connector import (
    Checkpoint,
    PulledItem,
    SourceError,
    SourceRecord,
    Stream,
    Tombstone,
    check_total,
)

STREAM_NAMES = ("collections", "donors", "samples")
LIST_FIELDS = frozenset({"types", "diagnoses", "orpha", "data_categories"})
PAGING_STYLES = ("page", "offset", "cursor", "link")


class PagingConfig(Schema):
    style = fields.String(required=True, validate=validate.OneOf(PAGING_STYLES))
    size = fields.Integer(load_default=100, validate=validate.Range(1, 10_000))
    size_param = fields.String(load_default="per_page")
    page_param = fields.String(load_default="page")
    first_page = fields.Integer(load_default=1)
    offset_param = fields.String(load_default="offset")
    limit_param = fields.String(load_default="limit")
    cursor_param = fields.String(load_default="cursor")
    cursor_field = fields.String(load_default="next_cursor")
    total_field = fields.String(load_default=None, allow_none=True)


class StreamConfig(Schema):
    path = fields.String(required=True)
    params = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "canonical field -> dotted path in the record"},
    )
    values = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.String()),
        load_default=dict,
    )
    records = fields.String(load_default=None, allow_none=True)
    replication_key = fields.String(load_default=None, allow_none=True)
    since_param = fields.String(load_default=None, allow_none=True)
    deleted_field = fields.String(load_default=None, allow_none=True)

    @validates_schema
    def _has_id(self, data: dict[str, Any], **_: Any) -> None:
        if "id" not in data["fields_"]:
            raise ValidationError("must map the canonical `id`", "fields")
        if data.get("since_param") and not data.get("replication_key"):
            raise ValidationError("since_param needs a replication_key", "replication_key")


class RestConfig(HttpOptions, CodeMappingOptions):
    paging = fields.Nested(PagingConfig, required=True)
    records = fields.String(
        load_default="", metadata={"description": "dotted path to the list in each response"}
    )
    list_separator = fields.String(load_default=";")
    streams = fields.Dict(
        keys=fields.String(validate=validate.OneOf(STREAM_NAMES)),
        values=fields.Nested(StreamConfig),
        required=True,
    )

    @validates_schema
    def _all_streams(self, data: dict[str, Any], **_: Any) -> None:
        missing = [s for s in STREAM_NAMES if s not in data.get("streams", {})]
        if missing:
            raise ValidationError(f"needs the streams {missing}", "streams")


def page_params(paging: Mapping[str, Any], position: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters asking for the page at `position` (a recorder answers these)."""
    style = paging["style"]
    if style == "page":
        return {
            paging["page_param"]: position.get("page", paging["first_page"]),
            paging["size_param"]: paging["size"],
        }
    if style == "offset":
        return {
            paging["offset_param"]: position.get("offset", 0),
            paging["limit_param"]: paging["size"],
        }
    if style == "cursor":
        cursor = position.get("cursor")
        return {
            paging["size_param"]: paging["size"],
            **({paging["cursor_param"]: cursor} if cursor else {}),
        }
    return {paging["size_param"]: paging["size"]}


class RestConnector(HttpConnector):
    """Paged REST JSON with a declarative field mapping per stream."""

    name = "rest"
    description = "Generic paged REST JSON API with a field mapping in the config"
    config_schema = RestConfig
    streams = (
        Stream("collections", "collection", replication_key="(replication_key option)"),
        Stream("donors", "donor", replication_key="(replication_key option)"),
        Stream("samples", "sample", replication_key="(replication_key option)"),
    )

    def incremental(self) -> bool:
        return (
            any(s.get("since_param") for s in self.config["streams"].values())
            and not self.source.recorded
        )

    def pull(self, stream: Stream, state: Mapping[str, Any] | None) -> Iterator[PulledItem]:
        """Pages from the saved position, with `since_param` from the bookmark if any."""
        spec = self.config["streams"][stream.name]
        paging = self.config["paging"]
        position = dict(state or {})
        since = position.pop("since", None) if spec.get("since_param") else None
        high = position.pop("high", since)
        read = int(position.pop("read", 0))  # records of this read so far, tombstones too
        id_path = spec["fields_"]["id"]
        while True:
            page = self._page(spec, paging, position, since)
            records = dig(page.body, spec.get("records") or self.config["records"])
            if not isinstance(records, list):
                raise SourceError(
                    f"{page.url}: no list at {spec.get('records') or self.config['records']!r}",
                    retriable=True,
                )
            read += len(records)
            for n, record in enumerate(records):
                ident = dig(record, id_path) if isinstance(record, Mapping) else None
                source_id = str(ident) if ident not in (None, "") else None
                where = f"{spec['path']} {page.url.rsplit('?', 1)[-1]} #{n + 1}"
                if spec.get("replication_key") and isinstance(record, Mapping):
                    stamp = dig(record, spec["replication_key"])
                    high = later(high, str(stamp)) if stamp else high
                deleted = spec.get("deleted_field")
                if (
                    deleted
                    and source_id
                    and isinstance(record, Mapping)
                    and _true(dig(record, deleted))
                ):
                    yield Tombstone(stream.name, source_id, where)
                    continue
                payload = record if isinstance(record, Mapping) else {"value": record}
                yield SourceRecord(stream.name, source_id, payload, where)
            following = self._next(paging, position, page, len(records))
            if following is None:
                break
            position = following
            yield Checkpoint(stream.name, {**position, "since": since, "high": high, "read": read})
        if paging.get("total_field"):
            total = dig(page.body, paging["total_field"])
            check_total(
                f"{self.config['base_url'].rstrip('/')}/{spec['path']}",
                read,
                total if isinstance(total, int) and not isinstance(total, bool) else None,
            )
        yield Checkpoint(stream.name, {"since": high} if spec.get("since_param") else {})

    def _page(
        self,
        spec: Mapping[str, Any],
        paging: Mapping[str, Any],
        position: Mapping[str, Any],
        since: Any,
    ) -> Page:
        if paging["style"] == "link" and position.get("next"):
            return self.source.get(str(position["next"]))
        params = {**spec["params"], **page_params(paging, position)}
        if since and spec.get("since_param"):
            params[spec["since_param"]] = since
        return self.source.get(spec["path"], params)

    def _next(
        self, paging: Mapping[str, Any], position: Mapping[str, Any], page: Page, count: int
    ) -> dict[str, Any] | None:
        style = paging["style"]
        if style == "cursor":
            cursor = dig(page.body, paging["cursor_field"])
            return {"cursor": cursor} if cursor not in (None, "") and count else None
        if style == "link":
            link = page.link("next")
            return {"next": link} if link and count else None
        size = int(paging["size"])
        page_number = int(position.get("page", paging["first_page"]))
        if style == "offset":
            done = int(position.get("offset", 0)) + count
        else:
            done = (page_number - int(paging["first_page"])) * size + count
        if count < size:
            total = dig(page.body, paging["total_field"]) if paging.get("total_field") else None
            if isinstance(total, int) and done < total:
                raise SourceError(
                    f"{page.url}: {count} records where {size} were asked and {total - done} "
                    "more are announced: the page was cut short",
                    retriable=True,
                )
            return None
        if style == "offset":
            return {"offset": done}
        return {"page": page_number + 1}

    def map(self, record: SourceRecord) -> dict[str, Any]:
        """Follow each configured path; recode values; split list fields held as text."""
        spec = self.config["streams"][record.stream]
        recode: Mapping[str, Mapping[str, str]] = spec["values"]
        separator: str = self.config["list_separator"]
        mapped: dict[str, Any] = {"biobank_id": self.biobank_id}
        for field_name, path in spec["fields_"].items():
            value = dig(record.payload, path)
            if value is None:
                continue
            table = recode.get(field_name, {})
            if field_name in LIST_FIELDS:
                items = value if isinstance(value, list) else str(value).split(separator)
                mapped[field_name] = [
                    table.get(str(i).strip(), str(i).strip()) for i in items if str(i).strip()
                ]
            elif isinstance(value, str):
                text = value.strip()
                if text:
                    mapped[field_name] = table.get(text, text)
            else:
                mapped[field_name] = table.get(str(value), value) if table else value
        return map_fields(self.mapper, mapped)

    @functools.cached_property
    def mapper(self) -> CodeMapper:
        """The code mapping options every connector shares (connectors.mapping)."""
        return CodeMapper(self.config)


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")
