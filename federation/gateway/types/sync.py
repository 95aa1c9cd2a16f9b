"""Sync administration: run history, quarantined records, and starting a sync.

Who may see or do what is decided by the sync administration service
(federation/sync/admin.py); these resolvers only read their arguments and call it. The
gateway never talks to a source: a sync request is queued in the sync state store and
`biofed worker` runs it (federation/sync/schedule.py, docs/connectors.md).
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import graphene
from graphql import GraphQLResolveInfo

from federation.gateway.types.common import context, given
from federation.search.query import MAX_PAGE_SIZE
from federation.sync.admin import (
    DEFAULT_QUARANTINE_PAGE,
    DEFAULT_SYNC_RUNS,
    QueuedSync,
    ScheduledSync,
)
from federation.sync.admin import QuarantinedRecord as QuarantinedRecordData
from federation.sync.admin import RequestedSync as RequestedSyncData
from federation.sync.admin import SyncRun as SyncRunData


class SyncOutcome(graphene.Enum):
    class Meta:
        description = "How a sync run ended."

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    REFUSED = "refused"


class SyncRun(graphene.ObjectType):
    class Meta:
        description = "One run that pulled a biobank's data into the network's search index."

    id = graphene.ID(required=True, description="The run's id.")
    biobank_id = graphene.ID(required=True, description="The biobank that was synced.")
    kind = graphene.String(required=True, description="`full` or `incremental`.")
    triggered_by = graphene.String(required=True, description="Who or what started the run.")
    started_at = graphene.String(required=True, description="When it started (ISO 8601).")
    finished_at = graphene.String(description="When it ended (ISO 8601); null while running.")
    outcome = graphene.Field(SyncOutcome, required=True, description="How it ended.")
    read = graphene.Int(required=True, description="Records read from the source.")
    indexed = graphene.Int(required=True, description="Samples made searchable.")
    rejected = graphene.Int(required=True, description="Records quarantined as invalid.")
    deleted = graphene.Int(
        required=True,
        description="Samples gone from the source since the "
        "previous run, and so no longer searchable.",
    )
    withdrawn = graphene.Int(
        required=True, description="Samples left out because their donor withdrew consent."
    )
    duration_seconds = graphene.Float(description="How long the run took, in seconds.")
    generation = graphene.String(description="The data generation the run published.")
    error = graphene.String(description="Why the run failed, when it did.")

    @staticmethod
    def resolve_duration_seconds(parent: SyncRunData, info: GraphQLResolveInfo) -> float | None:
        return parent.duration_s


class QuarantinedRecord(graphene.ObjectType):
    class Meta:
        description = (
            "A record from a biobank's source that failed validation and is kept out of "
            "search, with the reason, so the biobank can fix it at the source."
        )

    biobank_id = graphene.ID(required=True, description="The biobank the record came from.")
    stream = graphene.String(required=True, description="The table or feed (e.g. `samples`).")
    source_id = graphene.String(description="The record's id at the source, when it had one.")
    position = graphene.String(description="Where the record sits at the source (e.g. a row).")
    field = graphene.String(description="The field that failed.")
    value = graphene.String(description="The value that failed.")
    reason = graphene.String(required=True, description="Why the record was rejected.")
    payload = graphene.String(
        required=True,
        description="The record as the source sent it (JSON; very large records are cut).",
    )
    run_id = graphene.ID(required=True, description="The sync run that last rejected it.")
    first_seen = graphene.String(required=True, description="When it was first rejected.")
    last_seen = graphene.String(required=True, description="When it was last rejected.")


class SyncRequestState(graphene.Enum):
    class Meta:
        description = "Where a requested sync is."

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"


class RequestedSync(graphene.ObjectType):
    class Meta:
        description = (
            "A sync an admin asked for: queued until the sync worker takes it, running while "
            "its run runs, finished with the run's outcome."
        )

    request_id = graphene.ID(required=True, description="The request's id.")
    biobank_id = graphene.ID(required=True, description="The biobank to sync.")
    mode = graphene.String(required=True, description="`auto` or `full`.")
    requested_by = graphene.String(required=True, description="Who asked for it.")
    requested_at = graphene.String(required=True, description="When (ISO 8601).")
    taken_at = graphene.String(description="When the worker took it (ISO 8601); null: queued.")
    state = graphene.Field(SyncRequestState, required=True, description="Where it is.")
    run = graphene.Field(SyncRun, description="Its run, once the worker started it.")

    @staticmethod
    def resolve_request_id(parent: RequestedSyncData, info: GraphQLResolveInfo) -> int:
        return parent.request.id

    @staticmethod
    def resolve_biobank_id(parent: RequestedSyncData, info: GraphQLResolveInfo) -> str:
        return parent.request.biobank_id

    @staticmethod
    def resolve_mode(parent: RequestedSyncData, info: GraphQLResolveInfo) -> str:
        return parent.request.mode

    @staticmethod
    def resolve_requested_by(parent: RequestedSyncData, info: GraphQLResolveInfo) -> str:
        return parent.request.requested_by

    @staticmethod
    def resolve_requested_at(parent: RequestedSyncData, info: GraphQLResolveInfo) -> str:
        return parent.request.requested_at

    @staticmethod
    def resolve_taken_at(parent: RequestedSyncData, info: GraphQLResolveInfo) -> str | None:
        return parent.request.claimed_at


class SyncSchedule(graphene.ObjectType):
    class Meta:
        description = "When the sync worker syncs a biobank (the network file's `schedule:`)."

    biobank_id = graphene.ID(required=True, description="The biobank.")
    mode = graphene.String(required=True, description="`auto`, `incremental` or `full`.")
    cron = graphene.String(required=True, description="The cron line (UTC).")
    next_at = graphene.String(required=True, description="Its next tick (ISO 8601).")
    last_at = graphene.String(required=True, description="Its latest tick (ISO 8601).")


class SyncQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    sync_runs = graphene.List(
        graphene.NonNull(SyncRun),
        required=True,
        biobank=graphene.ID(description="Only this biobank's runs."),
        first=graphene.Int(
            default_value=DEFAULT_SYNC_RUNS,
            description=f"How many runs, newest first (1 to {MAX_PAGE_SIZE}).",
        ),
        description="Recent sync runs: when each biobank's data was pulled and what happened.",
    )
    quarantine = graphene.List(
        graphene.NonNull(QuarantinedRecord),
        required=True,
        biobank=graphene.ID(required=True, description="The biobank."),
        first=graphene.Int(
            default_value=DEFAULT_QUARANTINE_PAGE,
            description=f"How many records (1 to {MAX_PAGE_SIZE}).",
        ),
        offset=graphene.Int(default_value=0, description="How many records to skip."),
        description="Records of a biobank's source that failed validation, with the reasons. "
        "Only for admins of that biobank: the payloads are the biobank's own data.",
    )

    sync_requests = graphene.List(
        graphene.NonNull(RequestedSync),
        required=True,
        biobank=graphene.ID(description="Only this biobank's requests."),
        first=graphene.Int(
            default_value=DEFAULT_SYNC_RUNS,
            description=f"How many requests, newest first (1 to {MAX_PAGE_SIZE}).",
        ),
        description="Syncs admins asked for (`startSync`): queued, running or finished. "
        "For the same people as `syncRuns`.",
    )
    sync_schedules = graphene.List(
        graphene.NonNull(SyncSchedule),
        required=True,
        biobank=graphene.ID(description="Only this biobank's schedules."),
        description="When the sync worker syncs each biobank. For the same people as `syncRuns`.",
    )

    @staticmethod
    def resolve_sync_requests(
        root: None, info: GraphQLResolveInfo, first: int | None, biobank: str | None = None
    ) -> list[RequestedSyncData]:
        request = context(info)
        return request.sync_admin.requests(
            request.identity, biobank=biobank, first=given(first, DEFAULT_SYNC_RUNS)
        )

    @staticmethod
    def resolve_sync_schedules(
        root: None, info: GraphQLResolveInfo, biobank: str | None = None
    ) -> list[ScheduledSync]:
        request = context(info)
        return request.sync_admin.schedules(request.identity, biobank=biobank)

    @staticmethod
    def resolve_sync_runs(
        root: None, info: GraphQLResolveInfo, first: int | None, biobank: str | None = None
    ) -> list[SyncRunData]:
        request = context(info)
        return request.sync_admin.runs(
            request.identity, biobank=biobank, first=given(first, DEFAULT_SYNC_RUNS)
        )

    @staticmethod
    def resolve_quarantine(
        root: None,
        info: GraphQLResolveInfo,
        biobank: str,
        first: int | None,
        offset: int | None,
    ) -> list[QuarantinedRecordData]:
        request = context(info)
        return request.sync_admin.quarantine(
            request.identity,
            biobank,
            first=given(first, DEFAULT_QUARANTINE_PAGE),
            offset=given(offset, 0),
        )


class SyncRequested(graphene.ObjectType):
    class Meta:
        description = (
            "A sync a biobank admin asked for, queued for the sync worker (`biofed worker`). "
            "Its run appears in `syncRuns` once the worker starts it."
        )

    request_id = graphene.ID(required=True, description="The queued request's id.")
    biobank_id = graphene.ID(required=True, description="The biobank to sync.")
    mode = graphene.String(
        required=True, description="`auto` (incremental where the source can) or `full`."
    )
    requested_by = graphene.String(required=True, description="Who asked for it.")
    requested_at = graphene.String(required=True, description="When (ISO 8601).")
    already_queued = graphene.Boolean(
        required=True,
        description="True when a request for this biobank was already waiting: this is it.",
    )


class StartSync(graphene.Mutation):
    class Meta:
        description = (
            "Queue a sync of a biobank. Only admins of that biobank may; others get FORBIDDEN."
        )

    class Arguments:
        biobank = graphene.ID(required=True, description="The biobank to sync.")
        full = graphene.Boolean(
            default_value=False,
            description="Read the whole source (finds deletions a source without a change "
            "feed cannot report) instead of only what changed.",
        )

    Output = SyncRequested

    @staticmethod
    def mutate(
        root: None, info: GraphQLResolveInfo, biobank: str, full: bool = False
    ) -> QueuedSync:
        request = context(info)
        return request.sync_admin.start_sync(request.identity, biobank, full=full)


class SyncMutation(graphene.ObjectType):
    class Meta:
        abstract = True

    start_sync = StartSync.Field(
        description="Queue a sync of your biobank; returns the queued request."
    )
