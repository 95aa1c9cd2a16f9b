"""Handing a request over: the BBMRI-ERIC Negotiator's discovery payload, and links to the
biobanks' own application pages that carry the question.

The payload is what a discovery service POSTs to the Negotiator's `/api/v3/requests`
(its `RequestCreateDTO`: `url` of the query in the discovery service, `humanReadable`, and
a non-empty set of `resources`, each with an `id` and `name`; github.com/BBMRI-ERIC/
negotiator). The Negotiator answers with the request and a `redirectUrl` where the
researcher continues; we record that link on the request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from federation.errors import RequestError
from federation.requests.config import RequestPolicy, RequestsSettings
from federation.settings import Network
from federation.state.access_requests import StoredRequest

# The search page's address parameters (federation/web/static/state.js) per query field.
_LIST_PARAMETERS = (
    ("diseases", "disease"),
    ("materials", "material"),
    ("sexes", "sex"),
    ("biobanks", "biobank"),
    ("collection_types", "collection_type"),
    ("data_categories", "data_category"),
    ("text_exclude", "text_exclude"),
)
_PURPOSE_FLAGS = (
    ("commercial", "commercial"),
    ("for_profit", "for_profit"),
    ("ethics_approval", "ethics"),
    ("genetic", "genetic"),
)
RESOURCE_TYPE = "biobank"


class NegotiatorUnavailable(RequestError):
    """The Negotiator did not take the request; nothing was recorded."""

    code = "NEGOTIATOR_UNAVAILABLE"


def search_url(public_url: str, query: Mapping[str, Any], purpose: Mapping[str, Any]) -> str:
    """The network's search page showing the request's question and purpose."""
    params: list[tuple[str, str]] = []
    for field, name in _LIST_PARAMETERS:
        params += [(name, str(v)) for v in query.get(field) or ()]
    if query.get("text"):
        params.append(("text", str(query["text"])))
    for field in ("age_min", "age_max"):
        if query.get(field) is not None:
            params.append((field, str(query[field])))
    params.append(("purpose", str(purpose["kind"]).upper()))
    params += [("purpose_disease", str(c)) for c in purpose.get("diseases") or ()]
    if purpose.get("country"):
        params.append(("country", str(purpose["country"])))
    params += [(name, "1") for field, name in _PURPOSE_FLAGS if purpose.get(field)]
    return f"{public_url}/?{urlencode(params)}"


def negotiator_payload(
    request: StoredRequest, network: Network, settings: RequestsSettings
) -> dict[str, Any]:
    """The Negotiator's discovery payload for a request (all its biobanks)."""
    names = {s.biobank.id: s.biobank.name for s in network.biobanks}
    resources = [
        {
            "id": part.biobank_id,
            "name": names.get(part.biobank_id, part.biobank_id),
            "type": RESOURCE_TYPE,
        }
        for part in request.parts
    ]
    return {
        "url": search_url(settings.public_url, request.query, request.purpose),
        "humanReadable": f"{request.title}: {request.question}",
        "resources": resources,
    }


def application_links(request: StoredRequest, policy: RequestPolicy) -> dict[str, str]:
    """Per biobank that names an application URL, that URL carrying the question.

    The template's `{query}` becomes the question as JSON, `{request}` the request id and
    `{title}` its title, each URL-encoded; a template without `{query}` gets a `query`
    parameter added."""
    question = json.dumps(request.query, sort_keys=True, separators=(",", ":"))
    links = {}
    for part in request.parts:
        template = policy.application_urls.get(part.biobank_id)
        if template is None:
            continue
        if "{query}" not in template:
            template += ("&" if "?" in template else "?") + "query={query}"
        links[part.biobank_id] = (
            template.replace("{query}", quote(question, safe=""))
            .replace("{request}", quote(request.id, safe=""))
            .replace("{title}", quote(request.title, safe=""))
        )
    return links


def post_to_negotiator(url: str, payload: Mapping[str, Any], timeout: float) -> str:
    """POST the payload; the Negotiator's `redirectUrl` for the researcher."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as err:
        raise NegotiatorUnavailable(f"negotiator: {url} answered HTTP {err.code}") from None
    except (OSError, ValueError) as err:
        raise NegotiatorUnavailable(f"negotiator: {url} could not be reached: {err}") from None
    link = body.get("redirectUrl") if isinstance(body, dict) else None
    if not isinstance(link, str) or not link.startswith(("http://", "https://")):
        raise NegotiatorUnavailable(f"negotiator: {url} answered without a redirectUrl")
    return link
