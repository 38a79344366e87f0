"""A small task tracker: its schema, and the layout of the JSON files its old versions kept.

The old tracker kept, under one folder (see ``fixtures/legacy/tracker/``):

* ``epics.json``: ``{"version": 1, "epics": {"E-1": {...}, ...}}``, a map keyed by id
  under a wrapper key (very old installs have the bare map);
* ``tasks/<id>.json``: one task per file, the id only in the file name; stray
  ``*.lock`` and ``.*.tmp`` files beside them;
* ``state/<id>.state.json``: per-task runtime state;
* ``approvals.json``: a list of approvals without ids;
* ``events.jsonl``: the event log, one event per line, in streams such as ``task:fn-1.2``.

:data:`LAYOUT` says how each maps onto :data:`SCHEMA`; ``statestore demo``
imports the bundled install with it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from statestore.legacy import JsonFile, JsonFiles, JsonLines, LegacyLayout
from statestore.schema import Collection, Log, Schema

__all__ = [
    "APPROVALS",
    "EPICS",
    "EVENTS",
    "LAYOUT",
    "SCHEMA",
    "STATES",
    "TASKS",
    "Approval",
    "Epic",
    "Task",
    "TaskEvent",
    "TaskState",
]


@attrs.define
class Epic:
    id: str
    title: str
    owner: str = ""
    status: str = "open"
    created: datetime | None = None


@attrs.define
class Task:
    id: str
    title: str
    epic: str | None = None
    status: str = "todo"
    tags: list[str] = attrs.Factory(list)
    points: int = 0


@attrs.define
class TaskState:
    task: str
    assignee: str | None = None
    started_at: datetime | None = None
    attempts: int = 0
    blocked_reason: str | None = None


@attrs.define
class Approval:
    id: str
    task: str
    by: str
    at: datetime
    verdict: str
    note: str = ""


@attrs.define
class TaskEvent:
    type: str
    actor: str = ""
    data: dict[str, Any] = attrs.Factory(dict)


EPICS = Collection("epics", Epic, key="id", indexes=["status"])
TASKS = Collection("tasks", Task, key="id", indexes=["status", "epic"])
STATES = Collection("task_states", TaskState, key="task", indexes=["assignee"])
APPROVALS = Collection("approvals", Approval, key="id", indexes=["task"])
EVENTS = Log("events", TaskEvent)
SCHEMA = Schema("tracker", version=1, collections=[EPICS, TASKS, STATES, APPROVALS], logs=[EVENTS])


def _epics(doc: Any) -> Any:
    # Newer installs wrap the map: {"version": 1, "epics": {...}}; the oldest kept the bare map.
    return doc["epics"] if isinstance(doc, dict) and "epics" in doc else doc


def _task(doc: Any, path: Path) -> Any:
    return {**doc, "id": path.name.removesuffix(".json")} if isinstance(doc, dict) else doc


def _state(doc: Any, path: Path) -> Any:
    return {**doc, "task": path.name.removesuffix(".state.json")} if isinstance(doc, dict) else doc


def _approval(doc: Any, index: int) -> Any:
    # Approvals had no ids: give each one from its task and its place in the file (stable for a given file).
    return {**doc, "id": f"{doc.get('task')}#{index}"} if isinstance(doc, dict) else doc


def _stream(raw: dict[str, Any]) -> str:
    return str(raw["stream_id"])


def _at(raw: dict[str, Any]) -> str:
    return str(raw["ts"])


def _event(raw: dict[str, Any]) -> dict[str, Any]:
    return {"type": raw["type"], "actor": raw.get("actor", ""), "data": raw.get("data", {})}


LAYOUT = LegacyLayout(
    version=1,
    sources=[
        JsonFile("epics.json", into=EPICS, records=_epics),
        JsonFiles("tasks/*.json", into=TASKS, record=_task),
        JsonFiles("state/*.state.json", into=STATES, record=_state),
        JsonFile("approvals.json", into=APPROVALS, record=_approval),
        JsonLines(
            "events.jsonl", into=EVENTS, stream=lambda raw: raw["stream_id"], at=lambda raw: raw["ts"], record=_event
        ),
    ],
)
