"""Privacy properties of whole searches, over random networks, policies, identities, queries.

Each example writes a random network, syncs it for real and searches the embedded backend;
the truth is computed here from the generated rows, not by the search code.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from federation.consent import ResearchPurpose
from federation.disclosure.count import Count, Precision
from federation.disclosure.roles import Identity
from federation.search.query import FACETS, PageRequest, SampleQuery
from tests.conftest import Federation

BIOBANKS = ("b1", "b2", "b3")
DISEASES = ("C50.9", "C61", "E11.9", "I10", "")
CONSENTS = ("", "GRU", "HMB;NCU", "DS(C50);COL", "GRU;GS(JP)", "POA", "HMB;IRB;PUB")
ROLES = ("anonymous", "registered", "approved", "network_operator")


@dataclass
class Network:
    donors: dict[str, list[dict[str, Any]]]
    samples: dict[str, list[dict[str, Any]]]
    policies: dict[str, dict[str, dict[str, Any]]]


rules = st.fixed_dictionaries(
    {
        "granularity": st.sampled_from(["none", "boolean", "count", "record"]),
        "min_count": st.integers(1, 6),
        "rounding": st.sampled_from([1, 1, 2, 5]),
        "noise": st.sampled_from([0, 0, 1.5]),
    }
)


@st.composite
def networks(draw: st.DrawFn) -> Network:
    donors: dict[str, list[dict[str, Any]]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    policies = {}
    for bb in BIOBANKS:
        donors[bb], samples[bb] = [], []
        for d in range(draw(st.integers(0, 9))):
            donor = {
                "id": f"{bb}-D{d}",
                "sex": draw(st.sampled_from(["FEMALE", "MALE"])),
                "diagnoses": draw(st.sampled_from(DISEASES)),
                "consent": draw(st.sampled_from(CONSENTS)),
                "withdrawn": draw(st.booleans()) and draw(st.booleans()),
            }
            donors[bb].append(donor)
            for n in range(draw(st.integers(1, 3))):
                samples[bb].append(
                    {
                        "id": f"{donor['id']}-S{n}",
                        "donor": donor["id"],
                        "material": draw(st.sampled_from(["PLASMA", "DNA", "SERUM"])),
                    }
                )
        policies[bb] = {role: draw(rules) for role in ROLES}
    return Network(donors, samples, policies)


identities = st.builds(
    Identity,
    subject=st.just("someone"),
    authenticated=st.booleans(),
    operator=st.booleans(),
    admin_of=st.frozensets(st.sampled_from(BIOBANKS), max_size=1),
    approved_for=st.frozensets(st.sampled_from(BIOBANKS), max_size=2),
)
queries = st.builds(
    SampleQuery,
    diseases=st.sampled_from([(), ("C50",), ("II",), ("E11", "I10")]),
    sexes=st.sampled_from([(), ("FEMALE",), ("MALE",)]),
    materials=st.sampled_from([(), ("PLASMA",), ("DNA", "SERUM")]),
)
purposes = st.one_of(
    st.none(),
    st.builds(
        lambda kind, commercial, country: ResearchPurpose.parse(
            {
                "kind": kind,
                "diseases": ["C50.9"] if kind == "disease" else [],
                "commercial": commercial,
                "country": country,
            },
            today=dt.date(2026, 11, 26),
        ),
        st.sampled_from(["disease", "health", "ancestry", "general"]),
        st.booleans(),
        st.sampled_from([None, "JP", "DE"]),
    ),
)


def synced(root: Path, net: Network) -> Federation:
    fed = Federation(root)
    for bb in BIOBANKS:
        tab = fed.biobank(bb)
        for d in net.donors[bb]:
            tab.donor(
                d["id"],
                d["sex"],
                1970,
                diagnoses=d["diagnoses"],
                consent=d["consent"],
                consent_withdrawn="true" if d["withdrawn"] else "false",
            )
        for s in net.samples[bb]:
            tab.sample(s["id"], s["donor"], s["material"])
    from tests.support.network import write_network

    write_network(root, fed.biobanks.values())
    import yaml

    document = yaml.safe_load((root / "network.yaml").read_text())
    for entry in document["biobanks"]:
        entry["disclosure"] = net.policies[entry["id"]]
    (root / "network.yaml").write_text(yaml.safe_dump(document))
    for bb in BIOBANKS:
        source = fed.runtime.network().get(bb)
        from federation.sync.run import sync_biobank

        sync_biobank(
            source, fed.runtime.backend, fed.runtime.state, locks_dir=fed.settings.locks_dir
        )
    return fed


def truth(net: Network, query: SampleQuery) -> dict[str, tuple[int, int]]:
    """Exact donors and samples per biobank, withdrawn donors excluded."""
    ancestors = {"C50.9": {"C50", "II"}, "C61": {"II"}, "E11.9": {"E11"}, "I10": {"I10"}}
    out = {}
    for bb in BIOBANKS:
        donors = {d["id"]: d for d in net.donors[bb] if not d["withdrawn"]}
        hits = [
            s
            for s in net.samples[bb]
            if s["donor"] in donors
            and (not query.sexes or donors[s["donor"]]["sex"] in query.sexes)
            and (not query.materials or s["material"] in query.materials)
            and (
                not query.diseases
                or set(query.diseases)
                & (
                    {donors[s["donor"]]["diagnoses"]}
                    | ancestors.get(donors[s["donor"]]["diagnoses"], set())
                )
            )
        ]
        if hits:
            out[bb] = (len({s["donor"] for s in hits}), len(hits))
    return out


def numbers(count: Count) -> int:
    return count.value or 0


def check_release(count: Count, k: int, true: int) -> None:
    if count.value is not None:
        assert count.value == 0 or count.value >= k, (count, k)
        assert (count.value == 0) == (true == 0)
    if count.precision is Precision.EXACT:
        assert count.value == true


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(net=networks(), who=identities, query=queries, purpose=purposes)
def test_privacy_properties(
    net: Network, who: Identity, query: SampleQuery, purpose: ResearchPurpose | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fed = synced(Path(tmp), net)
        service = fed.runtime.search
        page = PageRequest(first=100)
        result = service.search(query, identity=who, purpose=purpose, facets=FACETS, page=page)
        expected = truth(net, query)
        policy = {bb: fed.runtime.network().policy(bb) for bb in BIOBANKS}

        for row in result.by_biobank:
            rule = policy[row.biobank_id].rule(who.role_for(row.biobank_id))
            assert rule.granularity.value != "none", "a hidden biobank must not appear"
            donors, samples = expected[row.biobank_id]
            # No released count lies in 1..k-1, and exact counts are true (withdrawn excluded).
            check_release(row.donors, rule.min_count, donors)
            check_release(row.samples, rule.min_count, samples)
            for outcome in row.consent or ():
                assert (
                    outcome.donors.value is None
                    or outcome.donors.value == 0
                    or (outcome.donors.value >= rule.min_count)
                )
        # Biobanks with matches but a NONE rule are absent; others with matches are present.
        shown = {r.biobank_id for r in result.by_biobank}
        for bb in expected:
            visible = policy[bb].rule(who.role_for(bb)).granularity.value != "none"
            assert (bb in shown) == visible
        event(f"biobank rows shown: {len(result.by_biobank)}")
        event(f"precisions: {sorted({r.donors.precision.value for r in result.by_biobank})}")
        event(f"records: {'none' if result.records is None else len(result.records.records) > 0}")
        # Totals and facet sums are sums of released figures, never more.
        assert numbers(result.donors) == sum(numbers(r.donors) for r in result.by_biobank)
        assert numbers(result.samples) == sum(numbers(r.samples) for r in result.by_biobank)
        for facet in result.facets:
            for bucket in facet.buckets:
                assert bucket.samples.value is None or bucket.samples.value >= 0

        # No record reaches a role without record granularity, and no withdrawn donor.
        withdrawn = {d["id"] for bb in BIOBANKS for d in net.donors[bb] if d["withdrawn"]}
        if result.records is not None:
            for record in result.records.records:
                bb = record["biobank_id"]
                assert policy[bb].rule(who.role_for(bb)).granularity.value == "record"
                assert record["donor_id"] not in withdrawn
                if purpose is not None:
                    assert record["consent_outcome"] in ("permitted", "conditional")

        # The same query twice gives the same answer (noise is fixed per query).
        again = service.search(query, identity=who, purpose=purpose, facets=FACETS, page=page)
        assert again == result

        # A purpose never widens what a role sees.
        if purpose is not None:
            bare = service.search(query, identity=who, facets=FACETS, page=page)
            assert [(r.biobank_id, r.donors, r.samples) for r in bare.by_biobank] == [
                (r.biobank_id, r.donors, r.samples) for r in result.by_biobank
            ]
            assert (bare.donors, bare.samples) == (result.donors, result.samples)
            if result.records is not None:
                assert bare.records is not None
                narrowed = {r["sample_id"] for r in result.records.records}
                assert narrowed <= {r["sample_id"] for r in bare.records.records}
        fed.runtime.backend.close()
