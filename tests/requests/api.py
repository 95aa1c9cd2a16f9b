"""GraphQL documents and inputs the access request tests share."""

from __future__ import annotations

from typing import Any

COUNT = "value precision exists"
CHECK = f"""
  biobank {{ id }} role granularity
  donors {{ {COUNT} }} samples {{ {COUNT} }}
  permitted {{ donors {{ {COUNT} }} samples {{ {COUNT} }} }}
  conditional {{ donors {{ {COUNT} }} samples {{ {COUNT} }} }}
  notPermitted {{ donors {{ {COUNT} }} samples {{ {COUNT} }} }}
  conditions {{ code }} collections
"""
REQUEST = f"""
  id title researcher question query purpose createdAt
  parts {{
    biobank {{ id }} state allowedMoves
    consentCheck {{ {CHECK} }}
    events {{ id biobankId at actorRole fromState toState message }}
  }}
"""
SUBMIT = f"""
mutation($input: AccessRequestInput!) {{ submitAccessRequest(input: $input) {{ {REQUEST} }} }}
"""
PREVIEW = f"""
query($q: SampleQuery!, $p: ResearchPurpose!, $b: [ID!]!, $lang: String) {{
  previewAccessRequest(query: $q, purpose: $p, biobanks: $b, language: $lang) {{
    question nothingPermits warning checks {{ {CHECK} }}
  }}
}}"""
GET = f"query($id: ID!) {{ accessRequest(id: $id) {{ {REQUEST} }} }}"
MINE = f"{{ myAccessRequests {{ {REQUEST} }} }}"
QUEUE = f"""
query($b: ID, $s: AccessRequestState) {{
  biobankAccessRequests(biobank: $b, state: $s) {{ {REQUEST} }}
}}"""
MOVE = f"""
mutation($id: ID!, $b: ID!, $to: AccessRequestState!, $m: String) {{
  moveAccessRequest(id: $id, biobank: $b, to: $to, message: $m) {{ {REQUEST} }}
}}"""
MESSAGE = f"""
mutation($id: ID!, $b: ID!, $m: String!) {{
  postAccessRequestMessage(id: $id, biobank: $b, message: $m) {{ {REQUEST} }}
}}"""
PAYLOAD = """
query($id: ID!) {
  negotiatorPayload(id: $id) {
    url humanReadable resources { id name type } payload
    applicationLinks { biobankId url } negotiatorLink
  }
}"""
SEND = """
mutation($id: ID!) {
  sendAccessRequestToNegotiator(id: $id) { payload negotiatorLink }
}"""

# C50 in female donors (tests/gateway/conftest.py): bb1 2 donors / 4 samples, bb2 1 / 2;
# every one of them under GRU consent, which permits disease research on C50.
C50_FEMALE: dict[str, Any] = {"diseases": ["C50"], "sexes": ["FEMALE"]}
C50_RESEARCH: dict[str, Any] = {"kind": "DISEASE", "diseases": ["C50"]}
# Only NRES consent permits use in clinical care: nobody in the test network has it.
CLINICAL_CARE: dict[str, Any] = {"kind": "CLINICAL_CARE"}


def submission(**changes: Any) -> dict[str, Any]:
    """A request for C50 samples of female donors at both test biobanks."""
    base: dict[str, Any] = {
        "query": C50_FEMALE,
        "purpose": C50_RESEARCH,
        "biobanks": ["bb1", "bb2"],
        "title": "Breast cancer plasma proteomics",
        "description": "Plasma of women with breast cancer for a proteomics study.",
    }
    return {**base, **changes}


def part(request: dict[str, Any], biobank: str) -> dict[str, Any]:
    """One biobank's part of a request as the API returned it."""
    found = [p for p in request["parts"] if p["biobank"]["id"] == biobank]
    assert len(found) == 1, request["parts"]
    return found[0]


SEARCH_CONSENT = """
query($q: SampleQuery!, $p: ResearchPurpose!) {
  search(query: $q, purpose: $p) {
    byBiobank {
      biobank { id }
      consent { outcome donors { value precision exists } samples { value precision exists } }
    }
  }
}"""

# A request's first search loads the disease names and warms the backend; on a machine
# shared with other test runs that alone can pass the default 10 s deadline.
SLOW_MACHINE: dict[str, Any] = {"timeout_seconds": 60}
