"""The app the migration contract migrates: four schema versions of people and notes."""

from __future__ import annotations

from typing import Any

import attrs

import statestore as ss
from statestore.migrations import MigrationContext

__all__ = [
    "M2",
    "M3",
    "M4",
    "NOTES1",
    "NOTES4",
    "PEOPLE1",
    "PEOPLE2",
    "USERS",
    "V1",
    "V2",
    "V3",
    "V4",
    "Note1",
    "Note4",
    "Person1",
    "Person2",
    "check_v1",
    "check_v4",
    "down3",
    "people2",
    "seed",
    "up3",
]


# A small app through four versions:
#   v1  people {id, name}, notes {text}
#   v2  people {id, first, last}            (split the name; down joins it)
#   v3  users  {id, first, last}            (people renamed to users)
#   v4  notes  {text, level}                (every note gets a level; down removes it)


@attrs.define
class Person1:
    id: str
    name: str


@attrs.define
class Person2:
    id: str
    first: str
    last: str = ""


@attrs.define
class Note1:
    text: str


@attrs.define
class Note4:
    text: str
    level: str = "info"


def _split(d: dict[str, Any]) -> dict[str, Any]:
    first, _, last = d.pop("name").partition(" ")
    return {**d, "first": first, "last": last}


def _join(d: dict[str, Any]) -> dict[str, Any]:
    first, last = d.pop("first"), d.pop("last")
    return {**d, "name": f"{first} {last}".strip()}


def _up2(m: MigrationContext) -> None:
    m.map_records("people", _split)


def _down2(m: MigrationContext) -> None:
    m.map_records("people", _join)


def up3(m: MigrationContext) -> None:
    m.rename_collection("people", "users")


def down3(m: MigrationContext) -> None:
    m.rename_collection("users", "people")


def _up4(m: MigrationContext) -> None:
    m.map_entries("notes", lambda e: {**e, "level": "warn" if "!" in e["text"] else "info"})


def _down4(m: MigrationContext) -> None:
    m.map_entries("notes", lambda e: {k: v for k, v in e.items() if k != "level"})


M2 = ss.Migration(2, "split person names", up=_up2, down=_down2)
M3 = ss.Migration(3, "rename people to users", up=up3, down=down3)
M4 = ss.Migration(4, "notes get a level", up=_up4, down=_down4)

PEOPLE1 = ss.Collection("people", Person1, key="id")
PEOPLE2 = ss.Collection("people", Person2, key="id", indexes=["last"])
USERS = ss.Collection("users", Person2, key="id", indexes=["last"])
NOTES1 = ss.Log("notes", Note1)
NOTES4 = ss.Log("notes", Note4)

V1 = ss.Schema("app", version=1, collections=[PEOPLE1], logs=[NOTES1])
V2 = ss.Schema("app", version=2, collections=[PEOPLE2], logs=[NOTES1], migrations=[M2])
V3 = ss.Schema("app", version=3, collections=[USERS], logs=[NOTES1], migrations=[M2, M3])
V4 = ss.Schema("app", version=4, collections=[USERS], logs=[NOTES4], migrations=[M2, M3, M4])


def seed(store: ss.Store) -> None:
    store[PEOPLE1].put(Person1("ada", "Ada Lovelace"))
    store[PEOPLE1].put(Person1("alan", "Alan Turing"))
    store[PEOPLE1].put(Person1("alan", "Alan M Turing"))  # revision 2
    store[PEOPLE1].put(Person1("plato", "Plato"))
    store[NOTES1].append(Note1("hello"), stream="a")
    store[NOTES1].append(Note1("careful!"), stream="b")


def check_v1(store: ss.Store) -> None:
    assert store[PEOPLE1].all() == [
        Person1("ada", "Ada Lovelace"),
        Person1("alan", "Alan M Turing"),
        Person1("plato", "Plato"),
    ]
    assert [(e.seq, e.stream, e.version, e.record) for e in store[NOTES1].read()] == [
        (1, "a", 1, Note1("hello")),
        (2, "b", 1, Note1("careful!")),
    ]


def people2() -> list[Person2]:
    return [Person2("ada", "Ada", "Lovelace"), Person2("alan", "Alan", "M Turing"), Person2("plato", "Plato", "")]


def check_v4(store: ss.Store) -> None:
    assert store[USERS].all() == people2()
    assert store[USERS].find(last="Lovelace") == [Person2("ada", "Ada", "Lovelace")]
    assert [(e.seq, e.stream, e.record) for e in store[NOTES4].read()] == [
        (1, "a", Note4("hello", "info")),
        (2, "b", Note4("careful!", "warn")),
    ]
