"""What a recorder of a network source must answer: the connectors' public request shapes.

A recording is a folder of responses that the HTTP connectors read in place of a server
(`base_url` is a folder). Whoever writes one (the demo network, tests) asks this module
which requests a full read sends and which file keeps each answer, so recorder and reader
always agree and no recorder reaches into a connector's internals.
"""

from __future__ import annotations

from connectors.beacon import page_request as beacon_page_request
from connectors.fhir import search_request as fhir_search_request
from connectors.http import recorded_name
from connectors.rest import page_params as rest_page_params

__all__ = ["beacon_page_request", "fhir_search_request", "recorded_name", "rest_page_params"]
