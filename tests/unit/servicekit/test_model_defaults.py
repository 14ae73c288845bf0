from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

import servicekit  # noqa: F401  (installs the memo)
from servicekit import model_defaults


class _Base(SQLModel, registry=registry()):
    pass


def _stamp() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


def _from_data(data: dict[str, Any]) -> str:
    return f"{data['name']}-copy"


class _Thing(_Base, table=True):
    id: int = Field(primary_key=True)
    name: str = "thing"
    at: datetime = Field(default_factory=_stamp)


def test_table_objects_get_their_factory_defaults_with_one_signature_look_per_factory(monkeypatch):
    looks: list[object] = []
    original = model_defaults._original

    def counting(factory: Any) -> bool:
        looks.append(factory)
        return original(factory)

    model_defaults._remembered.cache_clear()
    monkeypatch.setattr(model_defaults, "_original", counting)
    things = [_Thing(id=i) for i in range(50)]
    assert {t.at for t in things} == {_stamp()}
    assert looks.count(_stamp) == 1  # pydantic asks for every object; the answer is looked up once


def test_the_memo_gives_pydantics_answers_for_factories_with_and_without_the_data_argument():
    assert model_defaults.takes_validated_data_argument(_from_data) is True
    assert model_defaults.takes_validated_data_argument(_stamp) is False
    assert model_defaults.takes_validated_data_argument(list) is False

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> int:
            return 1

    assert model_defaults.takes_validated_data_argument(Unhashable()) is False
