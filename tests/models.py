"""Models the tests audit: a small lending app plus one model holding every standard column type."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.declarative import ConcreteBase
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Status(enum.Enum):
    draft = "draft"
    active = "active"
    closed = "closed"


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(sa.String(36))
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    password: Mapped[str | None] = mapped_column(sa.String(200))
    notes: Mapped[str | None] = mapped_column(sa.Text, deferred=True)
    loans: Mapped[list[Loan]] = relationship(back_populates="customer", cascade="all, delete")


class Loan(Base):
    __tablename__ = "loan"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customer.id"))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(18, 4))
    status: Mapped[str] = mapped_column(sa.String(20), default="draft")
    version: Mapped[int] = mapped_column(server_default=sa.text("1"))
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
        default=lambda: dt.datetime.now(dt.timezone.utc),
    )
    customer: Mapped[Customer | None] = relationship(back_populates="loans")


class Membership(Base):
    """A composite primary key."""

    __tablename__ = "membership"

    org: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    member: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(20))


class Vehicle(Base):
    """Joined-table inheritance base."""

    __tablename__ = "vehicle"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    wheels: Mapped[int] = mapped_column(default=4)
    __mapper_args__: Any = {"polymorphic_on": "kind", "polymorphic_identity": "vehicle"}


class Truck(Vehicle):
    __tablename__ = "truck"

    id: Mapped[int] = mapped_column(sa.ForeignKey("vehicle.id"), primary_key=True)
    payload_kg: Mapped[int] = mapped_column(default=0)
    __mapper_args__: Any = {"polymorphic_identity": "truck"}


class Pet(Base):
    """Single-table inheritance with a subclass-only column."""

    __tablename__ = "pet"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(50))
    __mapper_args__: Any = {"polymorphic_on": "kind", "polymorphic_identity": "pet"}


class Parrot(Pet):
    secret: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    __mapper_args__: Any = {"polymorphic_identity": "parrot"}


class Note(Base):
    """A large text value."""

    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))


class Stage(str, enum.Enum):
    """A str enum whose names differ from its values."""

    in_progress = "in-progress"
    done = "done"


class Priority(enum.Enum):
    HIGH = "high"
    LOW = "low"


_ticks = itertools.count(1)


class Task(Base):
    """Values the application assigns in another type than the row stores."""

    __tablename__ = "task"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(50), default="")
    stage: Mapped[str] = mapped_column(sa.String(20), default="")
    due: Mapped[dt.date | None] = mapped_column(sa.Date)
    flag: Mapped[bool] = mapped_column(default=False)
    priority: Mapped[Priority] = mapped_column(
        sa.Enum(Priority, values_callable=lambda e: [m.value for m in e], native_enum=False),
        default=Priority.LOW,
    )
    tick: Mapped[int] = mapped_column(default=0, onupdate=lambda: next(_ticks))


enrollment = sa.Table(
    "enrollment",
    Base.metadata,
    sa.Column("student_id", sa.ForeignKey("student.id"), primary_key=True),
    sa.Column("course", sa.ForeignKey("course.code"), primary_key=True),
    sa.Column("grade", sa.String(2), nullable=True),
)


class Enrollment(Base):
    """An association class mapped to the table a secondary= relationship writes."""

    __table__ = enrollment


mentoring = sa.Table(
    "mentoring",
    Base.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("student_id", sa.ForeignKey("student.id")),
    sa.Column("course", sa.ForeignKey("course.code")),
)


class Mentoring(Base):
    """An association class with a surrogate key: the collection's rows are found by criteria."""

    __table__ = mentoring


class Student(Base):
    __tablename__ = "student"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    courses: Mapped[list[Course]] = relationship(secondary=enrollment)
    mentored: Mapped[list[Course]] = relationship(secondary=mentoring)


class Course(Base):
    """A course, keyed by its code."""

    __tablename__ = "course"

    code: Mapped[str] = mapped_column(sa.String(20), primary_key=True)


class _ShoutedText(sa.types.TypeDecorator[str]):
    """Text stored upper-case and read back lower-case: a key whose stored form is not the
    value the application holds."""

    impl = sa.String(20)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.upper()

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.lower()


class Badge(Base):
    """A badge, keyed by a code whose SQLite variant is a TypeDecorator."""

    __tablename__ = "badge"

    code: Mapped[str] = mapped_column(
        sa.String(20).with_variant(_ShoutedText(), "sqlite"), primary_key=True
    )


shelving = sa.Table(
    "shelving",
    Base.metadata,
    sa.Column("shelf", sa.String(10), primary_key=True),
    sa.Column("book", sa.Integer, primary_key=True),
)


class Shelving(Base):
    """An association class on a secondary table without foreign key constraints, whose rows
    SQLAlchemy updates itself when a shelf's key changes (``passive_updates=False``)."""

    __table__ = shelving


class Book(Base):
    __tablename__ = "book"

    id: Mapped[int] = mapped_column(primary_key=True)


class Shelf(Base):
    __tablename__ = "shelf"

    code: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    books: Mapped[list[Book]] = relationship(
        secondary=shelving,
        primaryjoin=lambda: Shelf.code == foreign(shelving.c.shelf),
        secondaryjoin=lambda: Book.id == foreign(shelving.c.book),
        passive_updates=False,
    )


class Ledger(Base):
    """Plain values of several types, its key chosen by the application."""

    __tablename__ = "ledger"

    key: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(sa.String(20))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal("0.00"))
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    secret: Mapped[str] = mapped_column(sa.String(20), default="")


def _micro(type_: sa.types.TypeEngine[Any], mysql_type: sa.types.TypeEngine[Any]) -> Any:
    """MariaDB drops fractions of a second unless the column asks for them."""
    return type_.with_variant(mysql_type, "mysql", "mariadb")


class TypeZoo(Base):
    """One column of every standard SQLAlchemy type, for serialization round-trips."""

    __tablename__ = "type_zoo"

    id: Mapped[int] = mapped_column(primary_key=True)
    big: Mapped[int | None] = mapped_column(sa.BigInteger)
    small: Mapped[int | None] = mapped_column(sa.SmallInteger)
    numeric: Mapped[Decimal | None] = mapped_column(sa.Numeric(30, 10))
    flt: Mapped[float | None] = mapped_column(sa.Float)
    double: Mapped[float | None] = mapped_column(sa.Double)
    text: Mapped[str | None] = mapped_column(sa.Text)
    unicode: Mapped[str | None] = mapped_column(sa.Unicode(100))
    flag: Mapped[bool | None] = mapped_column(sa.Boolean)
    day: Mapped[dt.date | None] = mapped_column(sa.Date)
    naive: Mapped[dt.datetime | None] = mapped_column(_micro(sa.DateTime(), mysql.DATETIME(fsp=6)))
    aware: Mapped[dt.datetime | None] = mapped_column(
        _micro(sa.DateTime(timezone=True), mysql.DATETIME(fsp=6))
    )
    clock: Mapped[dt.time | None] = mapped_column(_micro(sa.Time(), mysql.TIME(fsp=6)))
    span: Mapped[dt.timedelta | None] = mapped_column(sa.Interval)
    uid: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    status: Mapped[Status | None] = mapped_column(sa.Enum(Status, name="zoo_status"))
    doc: Mapped[Any] = mapped_column(sa.JSON, nullable=True)


class Reading(Base):
    """A number of any scale (``Numeric()``), whose text the database keeps as given (PostgreSQL),
    rounds to its default scale (MariaDB) or keeps as a float (SQLite)."""

    __tablename__ = "reading"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[Decimal | None] = mapped_column(sa.Numeric())
    doc: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    label: Mapped[str] = mapped_column(sa.String(20), default="")


class Document(Base):
    """JSON changed in place, tracked by SQLAlchemy's mutable extension."""

    __tablename__ = "document"

    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(sa.JSON), default=dict)
    items: Mapped[list[Any]] = mapped_column(MutableList.as_mutable(sa.JSON), default=list)


article_tag = sa.Table(
    "article_tag",
    Base.metadata,
    sa.Column("article_id", sa.ForeignKey("article.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_id", sa.ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True),
)


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(50))


class Article(Base):
    """A many-to-many collection, and server-side values set on INSERT and UPDATE."""

    __tablename__ = "article"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    price: Mapped[int] = mapped_column(default=0)
    qty: Mapped[int] = mapped_column(default=1)
    total: Mapped[int | None] = mapped_column(sa.Computed("price * qty", persisted=True))
    revision: Mapped[int] = mapped_column(
        server_default=sa.text("0"), onupdate=sa.text("revision + 1")
    )
    tags: Mapped[list[Tag]] = relationship(secondary=article_tag)


class Animal(Base):
    """Single-table inheritance."""

    __tablename__ = "animal"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(50))
    good_boy: Mapped[bool | None]
    __mapper_args__: Any = {"polymorphic_on": "type", "polymorphic_identity": "animal"}


class Dog(Animal):
    __mapper_args__: Any = {"polymorphic_identity": "dog"}


class Employee(ConcreteBase, Base):
    """Concrete-table inheritance."""

    __tablename__ = "employee"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    __mapper_args__: Any = {"polymorphic_identity": "employee", "concrete": True}


class Manager(Employee):
    __tablename__ = "manager"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    reports: Mapped[int] = mapped_column(default=0)
    __mapper_args__: Any = {"polymorphic_identity": "manager", "concrete": True}


class Account(Base):
    """Attribute names that differ from column names, a unique key, a server-side counter."""

    __tablename__ = "account"

    ident: Mapped[int] = mapped_column("id", primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column("db_code", sa.String(20), unique=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    rev: Mapped[int] = mapped_column(server_default=sa.text("0"), onupdate=sa.text("rev + 1"))


class Ticket(Base):
    """An identity column as primary key."""

    __tablename__ = "ticket"

    id: Mapped[int] = mapped_column(sa.Identity(start=100), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(50))


class Draft(Base):
    """Server defaults fetched eagerly without RETURNING: SQLAlchemy gives a new object its
    identity key during the flush, with a SELECT of the defaults."""

    __tablename__ = "draft"
    __table_args__ = {"implicit_returning": False}
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(sa.String(50))
    status: Mapped[str] = mapped_column(sa.String(20), server_default="draft")


class Crew(Base):
    """A delete-orphan collection."""

    __tablename__ = "crew"

    id: Mapped[int] = mapped_column(primary_key=True)
    sailors: Mapped[list[Sailor]] = relationship(cascade="all, delete-orphan")


class Sailor(Base):
    __tablename__ = "sailor"

    id: Mapped[int] = mapped_column(primary_key=True)
    crew_id: Mapped[int | None] = mapped_column(sa.ForeignKey("crew.id"))
    logbook: Mapped[str | None] = mapped_column(sa.Text, deferred=True)
