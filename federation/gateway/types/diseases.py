"""WHO ICD-10 items: autocomplete by code or name, and names in a language."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

from dataclasses import dataclass

import graphene
from graphql import GraphQLResolveInfo

from federation.errors import BadInput
from federation.gateway.errors import bad_input
from federation.gateway.types.common import context, given, strings
from federation.model import icd10
from federation.search.query import MAX_PAGE_SIZE, BadQuery

DEFAULT_DISEASE_MATCHES = 10


@dataclass(frozen=True)
class DiseaseNode:
    """An ICD-10 item with its name in one language."""

    code: str
    name: str
    language: str


class DiseaseKind(graphene.Enum):
    class Meta:
        description = "The level of an ICD-10 item in the WHO hierarchy."

    CHAPTER = "chapter"
    BLOCK = "block"
    CATEGORY = "category"
    SUBCATEGORY = "subcategory"


class Disease(graphene.ObjectType):
    class Meta:
        description = (
            "A WHO ICD-10 (2019) item: a chapter, block, category or subcategory. Searching "
            "for an item also finds everything beneath it."
        )

    code = graphene.String(
        required=True, description="The WHO code, such as `C50`, `C50.9`, `C50-C50` or `II`."
    )
    name = graphene.String(required=True, description="The name that matched, in `language`.")
    language = graphene.String(required=True, description="The language of `name` (`en`, `ja`).")
    kind = graphene.Field(DiseaseKind, required=True, description="The level in the hierarchy.")
    chapter = graphene.String(required=True, description="The chapter the item belongs to.")
    ancestors = strings("The items above this one, nearest first, ending with the chapter.")

    @staticmethod
    def resolve_kind(parent: DiseaseNode, info: GraphQLResolveInfo) -> str:
        return icd10.kind(parent.code)

    @staticmethod
    def resolve_chapter(parent: DiseaseNode, info: GraphQLResolveInfo) -> str:
        return icd10.chapter(parent.code)

    @staticmethod
    def resolve_ancestors(parent: DiseaseNode, info: GraphQLResolveInfo) -> list[str]:
        return list(icd10.ancestors(parent.code))


class DiseaseQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    diseases = graphene.List(
        graphene.NonNull(Disease),
        required=True,
        text=graphene.String(required=True, description="A code prefix or words of a name."),
        first=graphene.Int(
            default_value=DEFAULT_DISEASE_MATCHES,
            description=f"How many matches (1 to {MAX_PAGE_SIZE}).",
        ),
        description="ICD-10 items by code or name in English or Japanese, best match first "
        "(for autocomplete).",
    )

    @staticmethod
    def resolve_diseases(
        root: None, info: GraphQLResolveInfo, text: str, first: int | None
    ) -> list[DiseaseNode]:
        try:
            matches = context(info).search.diseases(text, given(first, DEFAULT_DISEASE_MATCHES))
        except BadQuery as err:
            raise bad_input(err, err.argument) from None
        return [DiseaseNode(m.code, m.name, m.language) for m in matches]


class DiseaseNamesQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    # Names of ICD-10 items in a language, for the web UI (issue 6). The UI shows the
    # hierarchy of a disease and the chapter and block facets in the reader's language;
    # `diseases` answers by text and names each item as it matched.
    disease_names = graphene.List(
        graphene.NonNull(Disease),
        required=True,
        codes=graphene.List(
            graphene.NonNull(graphene.String),
            required=True,
            description=f"ICD-10 codes in any common spelling (1 to {MAX_PAGE_SIZE}).",
        ),
        language=graphene.String(
            default_value="en",
            description="`en` or `ja`; an item without a name in that language comes in English.",
        ),
        description="ICD-10 items by code, each named in `language`, in the order asked.",
    )

    @staticmethod
    def resolve_disease_names(
        root: None, info: GraphQLResolveInfo, codes: list[str], language: str | None
    ) -> list[DiseaseNode]:
        if not 1 <= len(codes) <= MAX_PAGE_SIZE:
            raise BadInput("codes", len(codes), f"give 1 to {MAX_PAGE_SIZE} codes")
        names = context(info).search.names
        nodes = []
        for n, value in enumerate(codes):
            try:
                code = icd10.normalise(value)
            except icd10.UnknownCode as err:
                raise BadInput(f"codes[{n}]", value, str(err)) from None
            nodes.append(DiseaseNode(code, *names.localised(code, language or "en")))
        return nodes
