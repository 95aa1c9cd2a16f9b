"""A tabular connector that stalls mid-stream, so tests can kill a sync half-way.

Used through the `module:Class` connector spec, the way a third-party plugin that is not
installed through entry points would be.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from marshmallow import fields

from connectors.tabular import TabularConfig, TabularConnector
from federation.sync.connector import Checkpoint, SourceRecord, Stream


class SlowConfig(TabularConfig):
    pause_after = fields.Integer(required=True)
    marker = fields.String(required=True)


class SlowTabularConnector(TabularConnector):
    name = "slow-tabular"
    config_schema = SlowConfig

    def pull(
        self, stream: Stream, state: Mapping[str, Any] | None
    ) -> Iterator[SourceRecord | Checkpoint]:
        for n, item in enumerate(super().pull(stream, state)):
            if stream.name == "samples" and n == self.config["pause_after"]:
                Path(self.config["marker"]).write_text("paused")
                time.sleep(600)  # the test kills the process during this sleep
            yield item
