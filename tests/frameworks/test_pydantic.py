"""pydantic v2 models edited in a running program: fields added, removed, retyped or given a new
default, validators and serializers edited, ``model_config`` changed. The class keeps its
identity; validation, serialisation, ``model_fields`` and the JSON schema follow, also in
the models that nest it; instances made before keep their data; a failed reload undoes it."""

from __future__ import annotations

import pytest
from server import need

SOURCE = """
from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

class Item(BaseModel):
    name: str
    price: float = 1.0

    @field_validator("name")
    @classmethod
    def strip(cls, v):
        return v.strip()

    @field_serializer("price")
    def money(self, v):
        return f"{v:.2f}"

class Order(BaseModel):
    items: list[Item] = []

class Shipment(BaseModel):
    order: Order
"""


@pytest.fixture
def models(project):
    need("pydantic")
    project.write("models", SOURCE)
    module = project.module("models")
    project.start()
    return project, module


def test_fields_added_retyped_and_given_new_defaults(models):
    project, m = models
    Item, Order, Shipment = m.Item, m.Order, m.Shipment
    before = Item(name=" a ", price=2)
    source = SOURCE.replace("price: float = 1.0", "price: int = 5\n    qty: int = 1")
    (report,) = project.save("models", source)
    assert report.ok and report.needs_restart == []
    assert (m.Item, m.Order, m.Shipment) == (Item, Order, Shipment)
    assert list(Item.model_fields) == ["name", "price", "qty"]
    item = Item(name=" b ", qty="3")
    assert type(item) is Item and (item.name, item.price, item.qty) == ("b", 5, 3)
    with pytest.raises(ValueError, match="price"):
        Item(name="c", price=1.5)  # an int now
    assert item.model_dump() == {"name": "b", "price": "5.00", "qty": 3}
    assert Item.model_json_schema()["properties"]["qty"] == {
        "default": 1,
        "title": "Qty",
        "type": "integer",
    }
    shipment = Shipment.model_validate({"order": {"items": [{"name": "x", "qty": 2}]}})
    assert type(shipment.order.items[0]) is Item and shipment.order.items[0].qty == 2
    assert "qty" in str(Shipment.model_json_schema())
    assert (before.name, before.price) == ("a", 2.0)  # made before: its data as it was


def test_a_field_removed_and_model_config_changed(models):
    project, m = models
    source = SOURCE.replace("    price: float = 1.0\n", "").replace(
        '    @field_serializer("price")\n    def money(self, v):\n        return f"{v:.2f}"\n', ""
    )
    source = source.replace(
        "    name: str\n", '    model_config = ConfigDict(extra="forbid")\n    name: str\n', 1
    )
    (report,) = project.save("models", source)
    assert report.ok, report.error
    assert list(m.Item.model_fields) == ["name"]
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        m.Item(name="a", price=1)
    assert m.Order(items=[{"name": "a"}]).model_dump() == {"items": [{"name": "a"}]}


def test_validator_and_serializer_bodies_and_decorators(models):
    project, m = models
    source = SOURCE.replace("return v.strip()", "return v.strip().upper()").replace(
        'f"{v:.2f}"', 'f"${v:.2f}"'
    )
    (report,) = project.save("models", source)
    assert report.patched == ["Item.money, Item.strip"] and report.needs_restart == []
    assert m.Item(name=" a ").model_dump() == {"name": "A", "price": "$1.00"}
    assert m.Order(items=[{"name": "b"}]).model_dump() == {
        "items": [{"name": "B", "price": "$1.00"}]
    }
    # The validator now runs before validation: it sees the raw input.
    source = source.replace(
        '@field_validator("name")', '@field_validator("name", mode="before")'
    ).replace("return v.strip().upper()", "return str(v).strip().upper()")
    (report,) = project.save("models", source)
    assert report.ok, report.error
    assert m.Item(name=12).name == "12"
    assert type(m.Order(items=[{"name": 7}]).items[0]) is m.Item


def test_a_failed_reload_leaves_the_models_as_they_were(models):
    project, m = models
    source = SOURCE.replace("price: float = 1.0", "price: float = 1.0\n    qty: int = 1")
    (report,) = project.save("models", source + "\nBROKEN = 1 / 0\n")
    assert not report.ok
    assert list(m.Item.model_fields) == ["name", "price"]
    assert m.Order(items=[{"name": "a", "qty": 3}]).model_dump() == {
        "items": [{"name": "a", "price": "1.00"}]
    }
    assert type(m.Order(items=[{"name": "a"}]).items[0]) is m.Item


def test_a_model_completed_by_another_thread_while_a_reload_walks_its_dict(project, monkeypatch):
    # A model built lazily (defer_build, or a forward reference resolved later) is completed
    # by its first validation, in whatever thread makes it (a request), under pydantic's
    # rebuild lock and not the reloader's: completing adds __signature__ to the class dict.
    # A completion still under way when a reload rebuilt the model changed the class dict
    # while the adapter walked it: "dictionary changed size during iteration", the reload
    # failed. Here the end of that completion runs inside the walk itself.
    need("pydantic")
    from mighty_patcher.frameworks import pydantic as adapter

    source = (
        "from pydantic import BaseModel, ConfigDict\n"
        "class Lazy(BaseModel):\n    model_config = ConfigDict(defer_build=True)\n"
        "    name: str\n"
    )
    project.write("lazy", source)
    m = project.module("lazy")
    project.start()
    assert "__signature__" not in vars(m.Lazy)  # not completed yet
    completed = []

    class State(frozenset):  # _STATE, with the completion ending in the middle of the walk
        def __contains__(self, key):
            if not completed:
                completed.append(m.Lazy.model_rebuild())
            return super().__contains__(key)

    monkeypatch.setattr(adapter, "_STATE", State(adapter._STATE))
    (report,) = project.save("lazy", source + "    qty: int = 1\n")
    assert report.ok, report.error
    assert completed == [True]
    item = m.Lazy(name="b", qty="2")
    assert type(item) is m.Lazy and (item.name, item.qty) == ("b", 2)
    assert list(m.Lazy.model_fields) == ["name", "qty"]
