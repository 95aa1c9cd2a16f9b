"""Consent-aware cross-search of samples and donors across many biobanks."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root holds the language-neutral contracts (`schema/`) and the default
# configuration (`config/`). The project is installed editable (see README), so both are
# found beside the package rather than duplicated into it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "schema"
CONFIG_DIR = PROJECT_ROOT / "config"
