"""Schema drift: a declaration that changed incompatibly at the same version is refused (backends that keep data)."""

from __future__ import annotations

import enum
from typing import Any, List, Optional  # noqa: UP035 - the spelling older code uses, on purpose

import attrs
import pytest

import statestore as ss

__all__ = ["DriftContract"]


@attrs.define
class Item:
    id: str
    desc: str = ""
    count: int = 0


@attrs.define
class Renamed:
    id: str
    description: str = ""
    count: int = 0


@attrs.define
class Retyped:
    id: str
    desc: str = ""
    count: str = ""


@attrs.define
class NewRequired:
    id: str
    owner: str
    desc: str = ""
    count: int = 0


@attrs.define
class NewWithDefault:
    id: str
    desc: str = ""
    count: int = 0
    owner: str = "nobody"


@attrs.define
class Both:
    id: str
    description: str
    count: str = ""


@attrs.define
class OldSpelling:
    id: str
    desc: str = ""
    count: int = 0
    owner: Optional[str] = None  # noqa: UP045 - the typing spelling, as older code writes it
    tags: List[str] = attrs.Factory(list)  # noqa: UP006


@attrs.define
class NewSpelling:
    id: str
    desc: str = ""
    count: int = 0
    owner: str | None = None
    tags: list[str] = attrs.Factory(list)


@attrs.define
class Note:
    text: str
    level: int = 0


@attrs.define
class NoteRenamed:
    body: str
    level: int = 0


@attrs.define
class NoDefault:
    id: str
    desc: str
    count: int = 0


def _holder(address: dict[str, Any], colors: list[str]) -> type:
    """A record class holding an ``Address`` class and a ``Color`` enum of the given shapes.

    Made anew for each shape, under the same names, as an application's next
    release would define them.
    """
    address_cls = attrs.make_class("Address", address)
    color: Any = enum.Enum("Color", {c.upper(): c for c in colors})  # type: ignore[misc]
    optional_address: Any = Optional[address_cls]  # noqa: UP045 - a type made at run time
    return attrs.make_class(
        "Holder",
        {
            "id": attrs.field(type=str),
            "address": attrs.field(type=optional_address, default=None),
            "colors": attrs.field(type=list[color], default=attrs.Factory(list)),
        },
    )


_ADDRESS = {"street": attrs.field(type=str), "zip": attrs.field(type=str, default="")}
_COLORS = ["red", "green"]


def _schema(tp: type, *, key: str = "id", version: int = 1, **options: Any) -> ss.Schema:
    return ss.Schema(
        "drift", version=version, collections=[ss.Collection("items", tp, key=key, **options)], logs=[_NOTES]
    )


_NOTES = ss.Log("notes", Note)


class DriftContract:
    """What a store does when the code's declarations change without a new schema version."""

    @pytest.fixture
    def seeded(self, store_factory: Any) -> Any:
        with store_factory(_schema(Item)) as store:
            store[store.schema.collections[0]].put(Item("a", "hello", 3))
            store[_NOTES].append(Note("n"), stream="s")
        return store_factory

    @pytest.mark.parametrize("mode", ["write", "read"])
    @pytest.mark.parametrize(
        ("schema", "change"),
        [
            (_schema(Renamed), "field 'desc' removed or renamed"),
            (_schema(Retyped), "field 'count' changed type from int to str"),
            (_schema(NewRequired), "field 'owner' added without a default"),
            (_schema(Item, key="desc"), "key changed from ['id'] to ['desc']"),
            (
                ss.Schema(
                    "drift",
                    version=1,
                    collections=[ss.Collection("items", Item, key="id")],
                    logs=[ss.Log("notes", NoteRenamed)],
                ),
                "log 'notes': field 'text' removed or renamed",
            ),
        ],
    )
    def test_incompatible_change_at_the_same_version_is_refused(
        self, seeded: Any, schema: ss.Schema, change: str, mode: str
    ) -> None:
        with pytest.raises(ss.SchemaDriftError) as info:
            seeded(schema, mode=mode)
        assert isinstance(info.value, ss.SchemaError)
        assert any(change in c for c in info.value.changes), info.value.changes
        assert "Raise the version to 2" in str(info.value)
        with seeded(_schema(Item), mode="read") as store:  # nothing was touched
            assert store[store.schema.collections[0]]["a"] == Item("a", "hello", 3)

    def test_each_schema_of_a_store_is_checked(self, store_factory: Any) -> None:
        other = ss.Schema("other", version=3, collections=[ss.Collection("others", Item, key="id")])
        with store_factory([_schema(Item), other]):
            pass
        drifted = ss.Schema("other", version=3, collections=[ss.Collection("others", Retyped, key="id")])
        for mode in ("write", "read"):
            with pytest.raises(ss.SchemaDriftError) as info:
                store_factory([_schema(Item), drifted], mode=mode)
            assert info.value.schema == "other"
            assert info.value.changes == ("collection 'others': field 'count' changed type from int to str",)
            assert "Raise the version to 4" in str(info.value)

    def test_a_type_only_respelled_is_no_drift(self, store_factory: Any) -> None:
        with store_factory(_schema(OldSpelling)) as store:
            store[store.schema.collections[0]].put(OldSpelling("a", owner="me", tags=["x"]))
        for mode in ("read", "write"):  # what ruff --fix (UP006, UP045) makes of the class
            with store_factory(_schema(NewSpelling), mode=mode) as store:
                assert store[store.schema.collections[0]]["a"] == NewSpelling("a", owner="me", tags=["x"])

    @pytest.mark.parametrize("mode", ["write", "read"])
    @pytest.mark.parametrize(
        ("holder", "change"),
        [
            (_holder({"street": attrs.field(type=str)}, _COLORS), "class 'Address': field 'zip' removed or renamed"),
            (
                _holder({"street": attrs.field(type=int), "zip": attrs.field(type=str, default="")}, _COLORS),
                "class 'Address': field 'street' changed type from str to int",
            ),
            (
                _holder({"city": attrs.field(type=str), **_ADDRESS}, _COLORS),
                "class 'Address': field 'city' added without a default",
            ),
            (
                _holder({"street": attrs.field(type=str), "zip": attrs.field(type=str)}, _COLORS),
                "class 'Address': field 'zip' lost its default",
            ),
            (_holder(_ADDRESS, ["red"]), "enum 'Color': value 'green' removed"),
        ],
    )
    def test_a_nested_class_or_enum_changed_at_the_same_version_is_refused(
        self, store_factory: Any, holder: type, change: str, mode: str
    ) -> None:
        first = _holder(_ADDRESS, _COLORS)
        with store_factory(_schema(first)) as store:
            coll = store.schema.collections[0]
            address = attrs.fields(first).address.type.__args__[0]
            color = attrs.fields(first).colors.type.__args__[0]
            store[coll].put(first("a", address("1 Main St", "12345"), [color.GREEN]))
        with pytest.raises(ss.SchemaDriftError) as info:
            store_factory(_schema(holder), mode=mode)
        assert any(change in c for c in info.value.changes), info.value.changes

    @pytest.mark.parametrize("mode", ["write", "read"])
    def test_nested_changes_that_old_records_survive_need_no_migration(self, store_factory: Any, mode: str) -> None:
        first = _holder(_ADDRESS, _COLORS)
        with store_factory(_schema(first)) as store:
            store[store.schema.collections[0]].put(first("a"))
        wider = _holder({**_ADDRESS, "city": attrs.field(type=str, default="")}, [*_COLORS, "blue"])
        with store_factory(_schema(wider), mode=mode) as store:
            assert store[store.schema.collections[0]]["a"].id == "a"

    @pytest.mark.parametrize("mode", ["write", "read"])
    def test_a_field_that_loses_its_default_is_refused(self, seeded: Any, mode: str) -> None:
        with pytest.raises(ss.SchemaDriftError) as info:
            seeded(_schema(NoDefault), mode=mode)
        assert info.value.changes == (
            "collection 'items': field 'desc' lost its default (records written before it was added may lack it)",
        )

    def test_a_retired_collection_declared_again_is_compared_with_what_the_store_keeps(self, seeded: Any) -> None:
        old = ss.Collection("old", Item, key="id")
        both = ss.Schema("drift", version=1, collections=[ss.Collection("items", Item, key="id"), old], logs=[_NOTES])
        with seeded(both) as store:
            store[old].put(Item("x", "kept", 1))
        with seeded(_schema(Item)):
            pass  # "old" is no longer declared: the store keeps it, retired
        again = ss.Collection("old", Retyped, key="id")
        drifted = ss.Schema(
            "drift", version=1, collections=[ss.Collection("items", Item, key="id"), again], logs=[_NOTES]
        )
        for mode in ("write", "read"):
            with pytest.raises(ss.SchemaDriftError) as info:
                seeded(drifted, mode=mode)
            assert info.value.changes == ("collection 'old': field 'count' changed type from int to str",)
        with seeded(both) as store:  # declared again as it was: no drift
            assert store[old]["x"] == Item("x", "kept", 1)

    def test_a_description_without_defaults_and_shapes_is_compared_on_what_it_has(self, store_factory: Any) -> None:
        first = _holder(_ADDRESS, _COLORS)
        with store_factory(_schema(first)) as store, store.transaction():
            version, desc = store._read_schemas()["drift"]
            full = desc["collections"][0]
            assert full["defaults"] == ["address", "colors"]
            assert set(full["shapes"]) == {"Address", "Color"}
            older = [{k: v for k, v in c.items() if k not in ("defaults", "shapes")} for c in desc["collections"]]
            store._set_schema("drift", version, {**desc, "collections": older})  # as an older statestore wrote it
        changed = _holder({"street": attrs.field(type=str)}, ["red"])
        with store_factory(_schema(changed), mode="read"):
            pass  # nothing stored to compare the nested shapes with
        with store_factory(_schema(first)) as store:  # a write-mode open stores the full description
            assert store._read_schemas()["drift"][1]["collections"][0] == full
        with pytest.raises(ss.SchemaDriftError):
            store_factory(_schema(changed), mode="read")

    def test_every_change_is_listed(self, seeded: Any) -> None:
        with pytest.raises(ss.SchemaDriftError) as info:
            seeded(_schema(Both))
        assert sorted(info.value.changes) == [
            "collection 'items': field 'count' changed type from int to str",
            "collection 'items': field 'desc' removed or renamed",
            "collection 'items': field 'description' added without a default",
        ]

    @pytest.mark.parametrize("mode", ["write", "read"])
    @pytest.mark.parametrize(
        "schema",
        [
            _schema(NewWithDefault),
            _schema(Item, indexes=["count"]),
            _schema(Item, unique=["desc"]),
        ],
    )
    def test_compatible_changes_need_no_migration(self, seeded: Any, schema: ss.Schema, mode: str) -> None:
        with seeded(schema, mode=mode) as store:
            got = store[schema.collections[0]]["a"]
            assert (got.id, got.desc, got.count) == ("a", "hello", 3)

    def test_new_collections_and_logs_need_no_migration(self, seeded: Any) -> None:
        more = ss.Collection("more", Item, key="id")
        schema = ss.Schema(
            "drift",
            version=1,
            collections=[ss.Collection("items", Item, key="id"), more],
            logs=[_NOTES, ss.Log("more_notes", Note)],
        )
        with seeded(schema) as store:
            store[more].put(Item("b"))
            assert store[schema.collections[0]]["a"] == Item("a", "hello", 3)
        with seeded(schema, mode="read") as store:
            assert store[more].keys() == ["b"]

    def test_a_new_version_with_a_migration_is_the_way(self, seeded: Any) -> None:
        def rename(m: ss.MigrationContext) -> None:
            def move(d: dict[str, Any]) -> dict[str, Any]:
                d["description"] = d.pop("desc")
                return d

            m.map_records("items", move)

        schema = ss.Schema(
            "drift",
            version=2,
            collections=[ss.Collection("items", Renamed, key="id")],
            logs=[_NOTES],
            migrations=[ss.Migration(2, "desc becomes description", up=rename)],
        )
        with seeded(schema) as store:
            assert store[schema.collections[0]]["a"] == Renamed("a", "hello", 3)
