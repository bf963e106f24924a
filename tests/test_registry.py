"""register() / unregister(): the three forms, validation at registration, subclasses."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import auditlog
from auditlog import ConfigurationError

from .helpers import entries
from .models import Customer, Truck, Vehicle


class Base(DeclarativeBase):
    pass


def test_register_as_plain_call_returns_the_class() -> None:
    assert auditlog.register(Customer) is Customer
    assert auditlog.is_registered(Customer)


def test_register_as_bare_decorator() -> None:
    @auditlog.register
    class Note(Base):
        __tablename__ = "note_bare"
        id: Mapped[int] = mapped_column(primary_key=True)

    assert auditlog.is_registered(Note)


def test_register_as_decorator_with_options() -> None:
    @auditlog.register(exclude={"secret"})
    class Account(Base):
        __tablename__ = "account_opts"
        id: Mapped[int] = mapped_column(primary_key=True)
        secret: Mapped[str]

    assert auditlog.is_registered(Account)


@pytest.mark.parametrize("option", ["include", "exclude", "mask"])
def test_unknown_attribute_is_an_error_naming_it(option: str) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown attribute 'pasword' in " + option):
        auditlog.register(Customer, **{option: {"pasword"}})
    assert not auditlog.is_registered(Customer)


def test_a_string_instead_of_a_collection_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="collection of attribute names"):
        auditlog.register(Customer, exclude="password")


def test_unmapped_class_is_an_error() -> None:
    class Plain:
        pass

    with pytest.raises(ConfigurationError, match="needs a mapped class"):
        auditlog.register(Plain)


def test_registering_a_base_covers_subclasses_and_unregister_undoes_it() -> None:
    auditlog.register(Vehicle)
    assert auditlog.is_registered(Truck)
    auditlog.unregister(Vehicle)
    assert not auditlog.is_registered(Truck)
    auditlog.unregister(Vehicle)  # harmless when not registered


def test_registering_again_replaces_the_options(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    auditlog.register(Customer, include={"id"})
    with Session_.begin() as session:
        session.add(Customer(name="Ada"))
    (entry,) = entries(engine)
    assert entry.after_state is not None
    assert set(entry.after_state) == {"id"}
