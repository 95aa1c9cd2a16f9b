"""The audit log of answered searches, for network operators."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import json

import graphene
from graphql import GraphQLResolveInfo

from federation.errors import check_text
from federation.gateway.types.common import context, given, page_type, strings
from federation.search.audit import DEFAULT_AUDIT_PAGE, AuditEntry, AuditPage, read_audit_log
from federation.search.query import MAX_PAGE_SIZE


class AuditedRelease(graphene.ObjectType):
    class Meta:
        description = "The precision one biobank released a search's counts at (never the counts)."

    biobank_id = graphene.ID(required=True, description="The biobank.")
    donors = graphene.String(required=True, description="The donor count's precision.")
    samples = graphene.String(required=True, description="The sample count's precision.")
    generation = graphene.String(description="The data generation that answered.")


class AuditLogEntry(graphene.ObjectType):
    class Meta:
        description = (
            "One answered search: who asked, what for, with which filters, and how precisely "
            "each biobank answered. Never the records or the numbers released."
        )

    id = graphene.ID(required=True, description="The entry's id; later entries have larger ids.")
    at = graphene.String(required=True, description="When the search was answered (ISO 8601).")
    subject = graphene.String(required=True, description="Who asked (see `Identity.subject`).")
    via = graphene.String(required=True, description="How they signed in.")
    roles = strings("Their roles at the time (lower case, as `Role` values).")
    admin_of = graphene.List(
        graphene.NonNull(graphene.ID), required=True, description="Biobanks they administered."
    )
    approved_for = graphene.List(
        graphene.NonNull(graphene.ID),
        required=True,
        description="Biobanks they were approved for.",
    )
    client_ip = graphene.String(description="The client's address.")
    filters = graphene.String(required=True, description="The normalised query, as JSON.")
    purpose = graphene.String(description="The normalised research purpose as JSON, if declared.")
    released = graphene.List(
        graphene.NonNull(AuditedRelease),
        required=True,
        description="Per biobank with matches: the precision its counts were released at.",
    )
    records_returned = graphene.Boolean(
        required=True, description="Whether sample records were returned."
    )
    record_count = graphene.Int(required=True, description="How many sample records.")

    @staticmethod
    def resolve_filters(parent: AuditEntry, info: GraphQLResolveInfo) -> str:
        return json.dumps(parent.filters, ensure_ascii=False, sort_keys=True)

    @staticmethod
    def resolve_purpose(parent: AuditEntry, info: GraphQLResolveInfo) -> str | None:
        return None if parent.purpose is None else json.dumps(parent.purpose, sort_keys=True)


AuditLogConnection = page_type(
    "AuditLogConnection",
    AuditLogEntry,
    description="A page of the audit log, newest first.",
    items="entries",
    nodes="The entries of this page.",
)


class AuditQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    audit_log = graphene.Field(
        AuditLogConnection,
        required=True,
        first=graphene.Int(
            default_value=DEFAULT_AUDIT_PAGE,
            description=f"How many entries, newest first (1 to {MAX_PAGE_SIZE}).",
        ),
        after=graphene.String(description="The `endCursor` of the previous page."),
        subject=graphene.String(description="Only this subject's searches."),
        description="Every answered search, for network operators only.",
    )

    @staticmethod
    @staticmethod
    def resolve_audit_log(
        root: None,
        info: GraphQLResolveInfo,
        first: int | None,
        after: str | None = None,
        subject: str | None = None,
    ) -> AuditPage:
        check_text("subject", subject)
        request = context(info)
        return read_audit_log(
            request.audit,
            request.identity,
            first=given(first, DEFAULT_AUDIT_PAGE),
            after=after,
            subject=subject,
        )
