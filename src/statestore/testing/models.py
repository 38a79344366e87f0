"""Record types and schemas the contract suite stores.

They exercise what real state holds: datetimes, enums, nested attrs classes,
lists, dicts, optionals, int and composite keys, and unique fields.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from statestore.schema import Collection, Log, Schema

__all__ = [
    "ACCOUNTS",
    "EVENTS",
    "SCHEMA",
    "SETTINGS",
    "TASKS",
    "TICKETS",
    "Account",
    "Event",
    "Meta",
    "Priority",
    "Setting",
    "Task",
    "Ticket",
]


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


@attrs.define
class Meta:
    owner: str = ""
    labels: dict[str, str] = attrs.Factory(dict)


@attrs.define
class Task:
    id: str
    title: str = ""
    status: str = "todo"
    points: int = 0
    tags: list[str] = attrs.Factory(list)
    due: datetime | None = None
    priority: Priority = Priority.LOW
    meta: Meta = attrs.Factory(Meta)
    ratio: float = 0.0
    done: bool = False


@attrs.define
class Ticket:
    """Int keys: order must be numeric (2 before 10)."""

    number: int
    title: str = ""


@attrs.define
class Setting:
    """A composite key, as registries keyed by (scope, project, name) use."""

    scope: str
    project: str
    name: str
    value: str = ""
    rank: int = 0


@attrs.define
class Account:
    """Unique fields: one email per account, one (org, handle) pair."""

    id: str
    email: str | None = None
    org: str | None = None
    handle: str | None = None


@attrs.define
class Event:
    type: str
    actor: str = ""
    n: int = 0


TASKS = Collection("tasks", Task, key="id", indexes=["status", "points"])
TICKETS = Collection("tickets", Ticket, key="number")
SETTINGS = Collection("settings", Setting, key=("scope", "project", "name"), indexes=["rank"])
ACCOUNTS = Collection("accounts", Account, key="id", unique=["email", ("org", "handle")])
EVENTS = Log("events", Event)

SCHEMA = Schema("contract", version=1, collections=[TASKS, TICKETS, SETTINGS, ACCOUNTS], logs=[EVENTS])
