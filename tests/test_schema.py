"""Declarations are checked when they are made."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import statestore as ss


@attrs.define
class Rec:
    id: str
    n: int = 0
    flag: bool = False
    tags: list[str] = attrs.Factory(list)


@attrs.define
class Later:
    id: str
    other: Any = None


@pytest.mark.parametrize("name", ["", "Tasks", "1tasks", "_tasks", "tasks-x", "tasks.x", "a" * 64, "tâches", None, 3])
def test_bad_names(name: Any) -> None:
    with pytest.raises(ss.SchemaError, match="invalid collection name"):
        ss.Collection(name, Rec, key="id")
    with pytest.raises(ss.SchemaError, match="invalid log name"):
        ss.Log(name, Rec)
    with pytest.raises(ss.SchemaError, match="invalid schema name"):
        ss.Schema(name, version=1, collections=[])


@pytest.mark.parametrize("name", ["sqlite_stat1", "sqlite_master", "sqlite_x"])
def test_names_sqlite_reserves(name: str) -> None:
    with pytest.raises(ss.SchemaError, match="reserved by SQLite"):
        ss.Collection(name, Rec, key="id")


def test_good_names() -> None:
    assert ss.Collection("a" * 63, Rec, key="id").name == "a" * 63
    assert ss.Collection("select", Rec, key="id").name == "select"


def test_record_type_must_be_attrs() -> None:
    with pytest.raises(ss.SchemaError, match="not an attrs class"):
        ss.Collection("x", dict, key="id")
    with pytest.raises(ss.SchemaError, match="not an attrs class"):
        ss.Log("x", int)


def test_unknown_fields_are_named() -> None:
    with pytest.raises(ss.SchemaError, match=r"key field 'nope' is not a field of Rec \(id, n, flag, tags\)"):
        ss.Collection("x", Rec, key="nope")
    with pytest.raises(ss.SchemaError, match="index field 'nope'"):
        ss.Collection("x", Rec, key="id", indexes=["nope"])
    with pytest.raises(ss.SchemaError, match="unique field 'nope'"):
        ss.Collection("x", Rec, key="id", unique=[("n", "nope")])


@pytest.mark.parametrize("field", ["flag", "tags"])
def test_key_fields_must_be_str_or_int(field: str) -> None:
    with pytest.raises(ss.SchemaError, match="must be declared str or int"):
        ss.Collection("x", Rec, key=field)


def test_duplicates_are_refused() -> None:
    with pytest.raises(ss.SchemaError, match="names a field twice"):
        ss.Collection("x", Rec, key=("id", "id"))
    with pytest.raises(ss.SchemaError, match="name a field twice"):
        ss.Collection("x", Rec, key="id", indexes=["n", "n"])
    c = ss.Collection("x", Rec, key="id")
    with pytest.raises(ss.SchemaError, match="declared twice"):
        ss.Schema("s", version=1, collections=[c], logs=[ss.Log("x", Rec)])


@pytest.mark.parametrize("version", [0, -1, 1.5, "1", True])
def test_version_must_be_positive_int(version: Any) -> None:
    with pytest.raises(ss.SchemaError, match="version must be an int"):
        ss.Schema("s", version=version, collections=[])


def test_schema_members_must_be_declarations() -> None:
    with pytest.raises(ss.SchemaError, match="is not a Collection or Log"):
        ss.Schema("s", version=1, collections=["tasks"])  # type: ignore[list-item]


def test_string_annotations_are_resolved() -> None:
    ns: dict[str, Any] = {}
    exec(  # noqa: S102 - builds a class whose annotations are strings, as `from __future__ import annotations` does
        "from __future__ import annotations\nimport attrs\n@attrs.define\nclass R:\n    id: int\n    name: str = ''\n",
        ns,
    )
    c = ss.Collection("r", ns["R"], key="id")
    assert c.field_types["id"] is int


def test_unresolvable_annotation_is_a_schema_error() -> None:
    ns: dict[str, Any] = {}
    exec(  # noqa: S102
        "from __future__ import annotations\nimport attrs\n@attrs.define\nclass R:\n    id: Missing\n",
        ns,
    )
    with pytest.raises(ss.SchemaError, match="cannot resolve"):
        ss.Collection("r", ns["R"], key="id")


def test_describe_is_json_and_complete() -> None:
    c = ss.Collection("c", Rec, key=("id", "n"), indexes=["flag"], unique=["tags"])
    s = ss.Schema("s", version=3, collections=[c], logs=[ss.Log("l", Rec)])
    d = s.describe()
    assert d["name"] == "s"
    assert d["version"] == 3
    assert d["collections"][0]["key"] == ["id", "n"]
    assert d["collections"][0]["unique"] == [["tags"]]
    assert d["collections"][0]["fields"]["tags"] == "list[str]"
    assert d["logs"][0]["name"] == "l"
    assert s.collection("c") is c
    assert s.collection("l") is None
    assert s.log("l") is not None
    assert c.lookup_fields == ("flag", "tags")
    assert c.composite
    assert c.key_of(Rec("a", 2)) == ("a", 2)


def test_schema_error_message_names_the_declaration() -> None:
    with pytest.raises(ss.SchemaError) as info:
        ss.Collection("tasks", Rec, key="nope")
    assert str(info.value).startswith("collection 'tasks': ")
    assert isinstance(info.value, ValueError)
