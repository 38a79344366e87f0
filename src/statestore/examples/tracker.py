"""A small task tracker's state: epics, tasks and an event log with ``task:<id>`` streams."""

from __future__ import annotations

from datetime import datetime

import attrs

from statestore.schema import Collection, Log, Schema

__all__ = ["EPICS", "EVENTS", "SCHEMA", "TASKS", "Epic", "Task", "TaskEvent"]


@attrs.define
class Epic:
    id: str
    title: str
    status: str = "open"


@attrs.define
class Task:
    id: str
    title: str
    epic: str | None = None
    status: str = "todo"
    assignee: str | None = None
    tags: list[str] = attrs.Factory(list)
    created: datetime | None = None


@attrs.define
class TaskEvent:
    type: str
    actor: str = ""
    detail: dict[str, str] = attrs.Factory(dict)


EPICS = Collection("epics", Epic, key="id", indexes=["status"])
TASKS = Collection("tasks", Task, key="id", indexes=["status", "epic"])
EVENTS = Log("events", TaskEvent)
SCHEMA = Schema("tracker", version=1, collections=[EPICS, TASKS], logs=[EVENTS])
