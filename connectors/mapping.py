"""Code mapping shared by every connector: one option vocabulary, documented once.

Every built-in connector's config takes these options (its schema mixes in
`CodeMappingOptions`):

```yaml
mappings:
  diseases: {"MONDO:0008903": C34, "F3181": F31.8}   # source code -> WHO ICD-10
  materials: {"blood-spot": WHOLE_BLOOD}             # source code -> MIABIS material type
  sex: {w: FEMALE, m: MALE}                          # source code -> sex vocabulary
  consent: {"open": GRU}                             # source term -> DUO shorthand
unmapped_diseases: quarantine    # or ignore
unmapped_materials: reject       # or a MIABIS material type (e.g. OTHER) for unknown ones
```

A mapping is applied first; what is still unknown is then handled by the connector's own
tables (NCIT sex terms, BBMRI.de material codes, UBERON origins, ...). A disease code that
is not a WHO ICD-10 diagnosis after mapping is left out of the record: with a quarantine
row naming it (`quarantine`, the default; `reject` is read the same, as older network
files wrote it) or without one (`ignore`, the admin's explicit choice). A material with no
MIABIS type rejects its sample unless `unmapped_materials` names the type to use.
Mapping targets are checked when the config is loaded, so a typo in a target is a config
error naming the option, not a thousand quarantined records.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from federation.model import duo, icd10, vocab
from federation.model.salvage import DROPPED_KEY

QUARANTINE, IGNORE, REJECT = "quarantine", "ignore", "reject"
# Spellings of an ICD-10 CURIE prefix in the wild: `ICD10:C50.9`, `ICD-10:`, `icd10cm:`.
ICD10_PREFIX = re.compile(r"^(?:ICD-?10(?:CM|GM|WHO)?|icd10):", re.IGNORECASE)
# The Identifiers.org form the BBMRI-ERIC Directory uses: `urn:miriam:icd:C50.9`.
MIRIAM_PREFIX = re.compile(r"^urn:miriam:icd:", re.IGNORECASE)


def _code_table(description: str) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": description},
    )


class MappingTables(Schema):
    """The `mappings:` option: per kind of code, source code -> canonical code."""

    diseases = _code_table("source disease code -> WHO ICD-10 code")
    materials = _code_table("source material code -> MIABIS material type")
    sex = _code_table("source sex code -> FEMALE, MALE, UNDIFFERENTIAL or UNKNOWN")
    consent = _code_table("source consent term or text -> DUO shorthand (e.g. `DS(C50);NCU`)")

    @validates_schema
    def _targets_exist(self, data: Mapping[str, Any], **_: Any) -> None:
        problems: dict[str, list[str]] = {}
        checks = (
            ("diseases", _is_diagnosis, "not a WHO ICD-10 diagnosis"),
            ("materials", vocab.material_types().canonical, "not a MIABIS material type"),
            ("sex", vocab.sexes().canonical, "not in the sex vocabulary"),
            ("consent", _is_consent, "not DUO consent shorthand"),
        )
        for kind, check, what in checks:
            for source, target in (data.get(kind) or {}).items():
                if not check(target):
                    problems.setdefault(kind, []).append(f"{source} -> {target!r}: {what}")
        if problems:
            raise ValidationError(problems)


class CodeMappingOptions(Schema):
    """The code mapping options every connector's config schema mixes in."""

    mappings = fields.Nested(
        MappingTables,
        load_default=dict,
        metadata={
            "description": "per kind of code (diseases, materials, sex, consent), "
            "source code -> canonical code"
        },
    )
    unmapped_diseases = fields.String(
        load_default=QUARANTINE,
        validate=validate.OneOf([QUARANTINE, IGNORE, REJECT]),
        metadata={
            "description": "a disease code that is not WHO ICD-10 after mapping: left out "
            "of the record with a quarantine row (quarantine; reject is read the same) or "
            "without one (ignore)"
        },
    )
    unmapped_materials = fields.String(
        load_default=REJECT,
        metadata={
            "description": "a material with no MIABIS type: reject the sample, or the MIABIS "
            "type to give it (e.g. OTHER)"
        },
    )

    @validates_schema
    def _fallback_material(self, data: Mapping[str, Any], **_: Any) -> None:
        fallback = data.get("unmapped_materials", REJECT)
        if fallback != REJECT and vocab.material_types().canonical(fallback) is None:
            raise ValidationError(
                f"{fallback!r} is neither reject nor a MIABIS material type",
                "unmapped_materials",
            )


class CodeMapper:
    """Applies a connector's mapping options to source codes, record by record."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        tables = config.get("mappings") or {}
        self.diseases: Mapping[str, str] = tables.get("diseases") or {}
        self.materials: Mapping[str, str] = tables.get("materials") or {}
        self.sexes: Mapping[str, str] = tables.get("sex") or {}
        self.consents: Mapping[str, str] = tables.get("consent") or {}
        self.unmapped_diseases = str(config.get("unmapped_diseases", QUARANTINE))
        self.unmapped_materials = str(config.get("unmapped_materials", REJECT))

    def disease(self, code: str) -> str:
        """The mapped code, or the source code as it is."""
        return self.diseases.get(code) or self.diseases.get(strip_prefix(code)) or code

    def diagnoses(
        self, items: Iterable[tuple[str, str, str]], dropped: list[dict[str, Any]]
    ) -> list[str]:
        """(where, source code, value as shown) triples -> the codes to keep.

        A code that is not a WHO ICD-10 diagnosis after mapping is left out; unless the
        admin chose `ignore`, it is listed in `dropped` with its reason.
        """
        kept: list[str] = []
        for where, raw, shown in items:
            code = self.disease(raw.strip())
            problem = diagnosis_problem(code)
            if problem is None:
                kept.append(code)
            elif self.unmapped_diseases != IGNORE:
                dropped.append(
                    {
                        "field": where,
                        "value": shown,
                        "reason": f"{problem}; map it under mappings.diseases, or set "
                        "unmapped_diseases: ignore",
                    }
                )
        return kept

    def material(self, code: str, builtin: Mapping[str, str] | None = None) -> str:
        """Mapping, then the connector's own table, then `unmapped_materials`, else as is."""
        mapped = self.materials.get(code) or (builtin or {}).get(code)
        if mapped:
            return mapped
        if vocab.material_types().canonical(code) is not None:
            return code
        return code if self.unmapped_materials == REJECT else self.unmapped_materials

    def sex(self, code: str, builtin: Mapping[str, str] | None = None) -> str:
        """Mapping, then the connector's own table, else the code as it is."""
        return self.sexes.get(code) or (builtin or {}).get(code) or code

    def consent(self, text: str) -> str:
        """The consent shorthand a source term maps to, or the text as it is."""
        return self.consents.get(text, text)


def map_fields(mapper: CodeMapper, mapped: dict[str, Any]) -> dict[str, Any]:
    """Apply the mapping options to canonical fields already named (tables, REST records)."""
    dropped: list[dict[str, Any]] = []
    codes = mapped.get("diagnoses")
    if isinstance(codes, list):
        items = [(f"diagnoses[{n}]", str(c), str(c)) for n, c in enumerate(codes)]
        mapped["diagnoses"] = mapper.diagnoses(items, dropped)
    if isinstance(mapped.get("material_type"), str):
        mapped["material_type"] = mapper.material(mapped["material_type"])
    if isinstance(mapped.get("sex"), str):
        mapped["sex"] = mapper.sex(mapped["sex"])
    for name in ("consent", "default_consent"):
        if isinstance(mapped.get(name), str):
            mapped[name] = mapper.consent(mapped[name])
    return with_dropped(mapped, dropped)


def with_dropped(mapped: dict[str, Any], dropped: list[dict[str, Any]]) -> dict[str, Any]:
    """A mapped record carrying the values its mapping left out (see model.salvage)."""
    if dropped:
        mapped[DROPPED_KEY] = dropped
    return mapped


def strip_prefix(code: str) -> str:
    """`ICD10:C50.9` and `urn:miriam:icd:C50.9` -> `C50.9`."""
    return MIRIAM_PREFIX.sub("", ICD10_PREFIX.sub("", code.strip()))


@functools.lru_cache(maxsize=65_536)
def diagnosis_problem(code: str) -> str | None:
    """Why `code` is not a WHO ICD-10 diagnosis (a category or subcategory), or None."""
    try:
        normal = icd10.normalise(code)
    except icd10.UnknownCode as err:
        return str(err)
    kind = icd10.kind(normal)
    return None if kind in ("category", "subcategory") else f"{code!r} is an ICD-10 {kind}"


def _is_diagnosis(code: str) -> bool:
    return diagnosis_problem(code) is None


def _is_consent(text: str) -> bool:
    try:
        duo.parse(text)
    except duo.InvalidConsent:
        return False
    return True
