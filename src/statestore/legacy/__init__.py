"""The one-time legacy bootstrap import: an app's old JSON state files into a new store.

:mod:`.declarations` holds what an application declares (sources, layouts,
reports); :mod:`.reading` parses and checks the old files; :mod:`.building`
builds the store aside, verifies and migrates it, and moves it into place.
"""

from statestore.backends.locations import store_exists
from statestore.legacy.building import import_legacy, legacy_present
from statestore.legacy.declarations import (
    After,
    Extra,
    Function,
    ImportRecord,
    ImportReport,
    JsonFile,
    JsonFiles,
    JsonLines,
    Legacy,
    LegacyEntry,
    LegacyLayout,
    OnError,
    Progress,
    Reject,
    SourceReport,
)

__all__ = [
    "After",
    "Extra",
    "Function",
    "ImportRecord",
    "ImportReport",
    "JsonFile",
    "JsonFiles",
    "JsonLines",
    "Legacy",
    "LegacyEntry",
    "LegacyLayout",
    "OnError",
    "Progress",
    "Reject",
    "SourceReport",
    "import_legacy",
    "legacy_present",
    "store_exists",
]
