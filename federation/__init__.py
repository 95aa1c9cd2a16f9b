"""Consent-aware cross-search of samples and donors across many biobanks."""

from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"

# Package data, read through importlib.resources so that an installed wheel finds it as
# well as an editable checkout does (wheels install unzipped, so these are real folders):
# the language-neutral contracts (GraphQL SDL, record JSON Schema, vocabularies, engine
# index templates) and the default configuration. A checkout mirrors them at `schema/` and
# `config/` for readers outside Python; tests/test_package_data.py keeps both identical and
# `biofed schema export` refreshes the `schema/` mirror.
SCHEMA_DIR = Path(str(files(__name__) / "contracts"))
CONFIG_DIR = Path(str(files(__name__) / "defaults"))

# A source checkout's root (scripts/, tests/, the schema/ mirror). Only a checkout has
# those there: code that runs from an installed wheel must not need it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_SCHEMA_DIR = PROJECT_ROOT / "schema"
CHECKOUT_CONFIG_DIR = PROJECT_ROOT / "config"
