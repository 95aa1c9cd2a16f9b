"""The BBMRI.de FHIR vocabulary: profile and extension URLs, code systems, code tables.

Shared by what reads FHIR (`connectors/fhir.py`) and what writes it (the demo's recorded
FHIR server, `federation/demo/sources.py`), so both agree on every URL and code without
the demo reaching into a connector. Tables map the source's codes to the canonical MIABIS
vocabulary in `schema/vocab/`.
"""

from __future__ import annotations

from federation.model import vocab

PROFILE_BASE = "https://fhir.bbmri.de/StructureDefinition/"
COLLECTION_PROFILE = PROFILE_BASE + "Collection"
DESCRIPTION_EXTENSION = PROFILE_BASE + "OrganizationDescription"
COLLECTION_TYPE_EXTENSION = PROFILE_BASE + "CollectionType"
STORAGE_TEMPERATURE_EXTENSION = PROFILE_BASE + "StorageTemperature"
CUSTODIAN_EXTENSION = PROFILE_BASE + "Custodian"
SAMPLE_DIAGNOSIS_EXTENSION = PROFILE_BASE + "SampleDiagnosis"
DATA_USE_EXTENSION = "https://w3id.org/biofed/fhir/StructureDefinition/DataUse"
CONSENT_WITHDRAWN_EXTENSION = "https://w3id.org/biofed/fhir/StructureDefinition/ConsentWithdrawn"
ICD10_SYSTEMS = (
    "http://hl7.org/fhir/sid/icd-10",
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm",
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
)
ORPHA_SYSTEM = "http://www.orpha.net"
MATERIAL_SYSTEM = "https://fhir.bbmri.de/CodeSystem/SampleMaterialType"
COLLECTION_TYPE_SYSTEM = "https://fhir.bbmri.de/CodeSystem/CollectionType"
STORAGE_TEMPERATURE_SYSTEM = "https://fhir.bbmri.de/CodeSystem/StorageTemperature"

# BBMRI.de SampleMaterialType -> MIABIS material type: the IG's CodeSystem, sub-types
# included (plasma-edta, cf-dna, tumor-tissue-frozen, ...), kept as a table in schema/vocab
# with its source; a sub-type is read as its parent is.
MATERIALS = vocab.crosswalk("bbmri_de_sample_material_types", "material_type")
# A sub-type's parent code (plasma-edta -> blood-plasma); top-level codes have none.
MATERIAL_PARENTS = vocab.crosswalk("bbmri_de_sample_material_types", "parent")
GENDERS = {"female": "FEMALE", "male": "MALE", "other": "UNDIFFERENTIAL", "unknown": "UNKNOWN"}
