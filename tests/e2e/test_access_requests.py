"""From a search to samples, end to end: the gateway under gunicorn (two workers, each with
its outbox deliverer), a real SMTP server and a webhook receiver on loopback.

A researcher searches, previews and submits a request to two biobanks; each biobank's
admin sees only their part, asks for more information, approves or declines; the
researcher sees each state; the e-mails arrive and the webhooks carry valid signatures
(the receiver refuses the first call, so one is retried); the store's log has every
transition; the Negotiator payload has the fields the Negotiator's API documents.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.runtime import Runtime
from federation.state.store import open_state_store
from federation.sync.run import sync_biobank
from tests.gateway.access import NO_RATE_LIMIT, auth_section, headers
from tests.gateway.conftest import make_settings, write_network
from tests.requests.api import (
    GET,
    MINE,
    MOVE,
    PAYLOAD,
    PREVIEW,
    QUEUE,
    SEARCH_CONSENT,
    SUBMIT,
    part,
    submission,
)
from tests.requests.receivers import (
    Mailbox,
    Webhooks,
    loopback_port,
    negotiator_errors,
    smtp_server,
    webhook_receiver,
)
from tests.support.server import graphql, running

pytestmark = pytest.mark.slow

SECRET = "e2e-webhook-secret"
# Signed-in researchers see counts from 2 donors up: bb2's single C50 woman is withheld.
REGISTERED = {"granularity": "count", "min_count": 2, "rounding": 1, "noise": 0}
BB2_ADMIN_EMAIL = "requests@bb2.example.org"
RESEARCHER_EMAIL = "researcher@university.example"  # the test key's subject
BB1_EMAIL = "samples@bb1.example.org"


@dataclass
class Network:
    url: str
    data_dir: Path
    mailbox: Mailbox
    hooks: Webhooks


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root: Path = tmp_path_factory.mktemp("requests-e2e")
    path = write_network(root)
    document = yaml.safe_load(path.read_text())
    document["default_disclosure"]["registered"] = REGISTERED
    document["biobanks"][1]["contact_email"] = BB2_ADMIN_EMAIL
    document["access_requests"] = {"roles": ["registered", "approved"]}
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    settings = make_settings(root, path)
    runtime = Runtime(settings)
    for source in runtime.network().biobanks:
        sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
    runtime.backend.close()
    with smtp_server() as (smtp_port, mailbox), webhook_receiver(SECRET, 1) as (hook, hooks):
        port = loopback_port()
        requests = {
            "public_url": f"http://127.0.0.1:{port}",
            "email": {"mode": "smtp", "smtp_port": smtp_port, "sender": "network@example.org"},
            "webhooks": [hook],
            "poll_seconds": 0.2,
            "backoff_seconds": 0.5,
        }
        env = {
            "BIOFED_DATA_DIR": str(settings.data_dir),
            "BIOFED_NETWORK": str(path),
            "BIOFED_HOST": "127.0.0.1",
            "BIOFED_PORT": str(port),
            "BIOFED_WORKERS": "2",
            "BIOFED_AUTH": json.dumps(auth_section()),
            "BIOFED_LIMITS": json.dumps(NO_RATE_LIMIT),
            "BIOFED_REQUESTS": json.dumps(requests),
            "BIOFED_WEBHOOK_SECRET": SECRET,
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        with running(command, env, port, root / "gunicorn.log") as url:
            yield Network(url, settings.data_dir, mailbox, hooks)


def call(net: Network, who: str, document: str, **variables: Any) -> dict[str, Any]:
    body = graphql(net.url, document, variables, headers(who))
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def wait_for(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def mails(net: Network) -> list[tuple[str, str]]:
    # A long subject is folded onto its own line; unfolded it keeps a leading space.
    return sorted((str(m["To"]), str(m["Subject"]).strip()) for m in net.mailbox.received())


def test_a_request_from_search_to_decisions(network: Network) -> None:
    net = network
    question = {"diseases": ["C50"], "sexes": ["FEMALE"]}
    purpose = {"kind": "DISEASE", "diseases": ["C50"]}
    # 1. The researcher searches with the purpose: both biobanks have matches.
    found = call(net, "researcher", SEARCH_CONSENT, q=question, p=purpose)["search"]["byBiobank"]
    assert [row["biobank"]["id"] for row in found] == ["bb1", "bb2"]
    # 2. The preview shows the consent check as a registered researcher may see it.
    preview = call(net, "researcher", PREVIEW, q=question, p=purpose, b=["bb1", "bb2"])
    checks = {c["biobank"]["id"]: c for c in preview["previewAccessRequest"]["checks"]}
    assert checks["bb1"]["permitted"]["donors"] == {
        "value": 2,
        "precision": "EXACT",
        "exists": None,
    }
    assert checks["bb2"]["permitted"]["donors"]["precision"] == "BELOW_THRESHOLD"
    assert checks["bb2"]["permitted"]["donors"]["value"] is None
    assert preview["previewAccessRequest"]["nothingPermits"] is False
    # 3. Submit to both.
    request = call(net, "researcher", SUBMIT, input=submission(query=question, purpose=purpose))
    request = request["submitAccessRequest"]
    rid = request["id"]
    assert part(request, "bb2")["consentCheck"]["permitted"]["donors"]["precision"] == (
        "BELOW_THRESHOLD"
    )
    # 4. Each admin's queue has only their part.
    for admin, biobank in (("bb1_admin", "bb1"), ("bb2_admin", "bb2")):
        queue = call(net, admin, QUEUE)["biobankAccessRequests"]
        [mine] = [r for r in queue if r["id"] == rid]
        assert [p["biobank"]["id"] for p in mine["parts"]] == [biobank]
        seen = call(net, admin, GET, id=rid)["accessRequest"]
        assert [p["biobank"]["id"] for p in seen["parts"]] == [biobank]

    def move(who: str, biobank: str, to: str, message: str | None = None) -> dict[str, Any]:
        moved = call(net, who, MOVE, id=rid, b=biobank, to=to, m=message)
        return part(moved["moveAccessRequest"], biobank)

    # 5. bb1 asks for more information, the researcher answers, bb1 approves.
    move("bb1_admin", "bb1", "UNDER_REVIEW")
    move("bb1_admin", "bb1", "MORE_INFO_NEEDED", "Please send your ethics approval.")
    answered = move("researcher", "bb1", "UNDER_REVIEW", "Ethics approval ERB-2026-17 attached.")
    assert answered["state"] == "UNDER_REVIEW"
    move("bb1_admin", "bb1", "APPROVED", "Approved for 4 samples.")
    # bb2 reviews and declines.
    move("bb2_admin", "bb2", "UNDER_REVIEW")
    move("bb2_admin", "bb2", "DECLINED", "Our donors' consent does not cover proteomics.")
    # 6. The researcher sees one request with a state per biobank.
    [mine] = [r for r in call(net, "researcher", MINE)["myAccessRequests"] if r["id"] == rid]
    assert {p["biobank"]["id"]: p["state"] for p in mine["parts"]} == {
        "bb1": "APPROVED",
        "bb2": "DECLINED",
    }
    thread = [e["message"] for e in part(mine, "bb1")["events"] if e["message"]]
    assert thread == [
        "Please send your ethics approval.",
        "Ethics approval ERB-2026-17 attached.",
        "Approved for 4 samples.",
    ]
    # 7. E-mails: each biobank and the researcher on submission (one per part), the
    # researcher on each admin's move, bb1 on the researcher's answer.
    subject = f"[biofed] access request {rid}"
    expected = sorted(
        [
            (BB1_EMAIL, f"{subject} submitted to Test biobank"),
            (BB2_ADMIN_EMAIL, f"{subject} submitted to Second biobank"),
            (RESEARCHER_EMAIL, f"{subject} submitted to Test biobank"),
            (RESEARCHER_EMAIL, f"{subject} submitted to Second biobank"),
            (RESEARCHER_EMAIL, f"{subject} at Test biobank: submitted -> under_review"),
            (RESEARCHER_EMAIL, f"{subject} at Test biobank: under_review -> more_info_needed"),
            (BB1_EMAIL, f"{subject} at Test biobank: more_info_needed -> under_review"),
            (RESEARCHER_EMAIL, f"{subject} at Test biobank: under_review -> approved"),
            (RESEARCHER_EMAIL, f"{subject} at Second biobank: submitted -> under_review"),
            (RESEARCHER_EMAIL, f"{subject} at Second biobank: under_review -> declined"),
        ]
    )
    wait_for("10 e-mails", lambda: len(mails(net)) >= len(expected))
    assert mails(net) == expected
    declined = [
        m for m in net.mailbox.received() if str(m["Subject"]).strip().endswith("-> declined")
    ]
    body = declined[0].get_payload()
    assert isinstance(body, str) and "consent does not cover proteomics" in body
    assert all(isinstance(m, Message) and m["From"] == "network@example.org" for m in declined)
    # 8. Webhooks: 2 submissions and 6 moves, each delivered once with a valid signature;
    # the receiver refused the very first call, which came again.
    wait_for("8 webhooks", lambda: sum(c["status"] == 204 for c in net.hooks.received()) >= 8)
    calls = net.hooks.received()
    assert all(c["valid"] for c in calls)
    assert calls[0]["status"] == 503
    delivered = [c["body"] for c in calls if c["status"] == 204]
    moves = sorted(
        (b["biobank"], b["from_state"] or "", b["to_state"])
        for b in delivered
        if b["request"] == rid
    )
    assert moves == sorted(
        [
            ("bb1", "", "submitted"),
            ("bb2", "", "submitted"),
            ("bb1", "submitted", "under_review"),
            ("bb1", "under_review", "more_info_needed"),
            ("bb1", "more_info_needed", "under_review"),
            ("bb1", "under_review", "approved"),
            ("bb2", "submitted", "under_review"),
            ("bb2", "under_review", "declined"),
        ]
    )
    # 9. The store's log has every transition, by whom.
    store = open_state_store("", net.data_dir)
    try:
        events = store.access_requests.events(rid)
        outbox = store.outbox.items()
    finally:
        store.close()
    transitions = [
        (e.biobank_id, e.actor_role, e.from_state, e.to_state) for e in events if e.to_state
    ]
    assert transitions == [
        ("bb1", "researcher", None, "submitted"),
        ("bb2", "researcher", None, "submitted"),
        ("bb1", "biobank_admin", "submitted", "under_review"),
        ("bb1", "biobank_admin", "under_review", "more_info_needed"),
        ("bb1", "researcher", "more_info_needed", "under_review"),
        ("bb1", "biobank_admin", "under_review", "approved"),
        ("bb2", "biobank_admin", "submitted", "under_review"),
        ("bb2", "biobank_admin", "under_review", "declined"),
    ]
    assert {
        e.actor for e in events if e.actor_role == "biobank_admin" and e.biobank_id == "bb2"
    } == {"api_key:admin@bb2.example"}
    retried = [i for i in outbox if i.notification.channel == "webhook" and i.attempts > 1]
    assert len(retried) == 1 and retried[0].delivered_at is not None
    # 10. The Negotiator payload has the fields its API documents.
    payload = call(net, "researcher", PAYLOAD, id=rid)["negotiatorPayload"]["payload"]
    payload = payload if isinstance(payload, dict) else json.loads(payload)
    assert negotiator_errors(payload) == []
    assert [r["id"] for r in payload["resources"]] == ["bb1", "bb2"]
