"""A staged sync of a FHIR source end to end with its state on each engine: runs,
quarantine, staged records and checkpoints in the store `state_url` names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from federation.runtime import Runtime
from federation.state import open_state_store, schema
from tests.connectors.sources import condition, grown_fhir_store, specimen
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import FhirApp, FhirStore, LoopbackServer, serving


@pytest.fixture
def fhir() -> Iterator[tuple[FhirStore, LoopbackServer]]:
    store = grown_fhir_store()
    with serving(FhirApp(store)) as server:
        yield store, server


def test_a_staged_sync_keeps_its_state_in_the_store(
    tmp_path: Path, store_url: str, fhir: tuple[FhirStore, LoopbackServer]
) -> None:
    open_state_store(store_url, tmp_path, migrate=True).close()  # `biofed migrate`
    source, server = fhir
    options = {"base_url": f"{server.url}/fhir", "page_size": 5, **FAST_RETRIES}
    network = HttpNetwork(tmp_path, [entry("bb-fhir", "fhir", options)])
    network.settings = network.settings.with_overrides(state_url=store_url)
    network.runtime = Runtime(network.settings)
    try:
        first = network.sync("bb-fhir")
        assert (first.kind, first.outcome, first.rejected, first.partial) == (
            "full",
            "succeeded",
            4,
            1,
        )
        assert network.counts() == {"bb-fhir": (7, 13)}
        source.put(specimen("bad-material", "p0", "blood-plasma"))  # fixed at the source
        source.put(condition("bad-icd", "p2", "C50.9"))
        source.delete("Specimen", "s1b")
        second = network.sync("bb-fhir")
        assert (second.kind, second.outcome, second.deleted) == ("incremental", "succeeded", 1)
        assert network.counts() == {"bb-fhir": (7, 13)}
        assert {"bad-sex", "bad-date", "no-donor"} == set(network.quarantine("bb-fhir"))
        # What the sync wrote is in the store the setting names, and nowhere else.
        elsewhere = open_state_store(store_url, tmp_path)
        assert [r.id for r in elsewhere.runs.history("bb-fhir")] == [second.id, first.id]
        assert elsewhere.quarantine.count("bb-fhir") == 3
        with elsewhere.read() as db:
            staged = db.execute(select(func.count()).where(schema.staged.c.biobank_id == "bb-fhir"))
            streams = db.execute(
                select(schema.checkpoints.c.stream).where(
                    schema.checkpoints.c.biobank_id == "bb-fhir"
                )
            )
            assert (staged.scalar_one(), len(streams.all())) >= (13, 1)
        elsewhere.close()
        assert not (tmp_path / "data" / "state.db").exists()
    finally:
        network.close()
        network.runtime.store.close()
