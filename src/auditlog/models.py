"""The two tables: ``audit_log`` (one row per entry) and ``audit_content_type`` (one row per model).

Storage choices, portable across SQLite, PostgreSQL and MariaDB:

- ``id`` is a ULID kept as a PostgreSQL ``uuid`` (16 bytes) or as its 32 lowercase hex digits
  (``CHAR(32)``, ASCII, compared byte for byte): types every tool can read, dump to JSON and
  restore, whose order is the ULID's, so ``ORDER BY id`` is creation order. Python sees the
  26-character ULID string.
- ``timestamp`` is always UTC with microseconds; MariaDB and SQLite have no time zone in the column,
  so the value is stored as naive UTC and handed back timezone-aware.
- the states are ``JSONB`` on PostgreSQL and ``JSON`` elsewhere.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, cast, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from ulid import ULID

from .exceptions import ConfigurationError
from .ulids import ulid_int, ulid_text

__all__ = [
    "ACTION_TYPES",
    "MAX_ID",
    "ULID_PATTERN",
    "ActionType",
    "AuditLog",
    "ContentType",
    "audit_log_table",
    "content_type_table",
    "create_tables",
    "metadata",
    "schema_is_current",
    "ulid_hex",
    "utc_bound",
]

#: What an entry records: a change (create, update, delete), or a read (access).
ActionType = Literal["create", "update", "delete", "access"]
ACTION_TYPES: tuple[ActionType, ...] = get_args(ActionType)
#: The text of a ULID (an entry or transaction id): Crockford's base32, 26 characters, the first
#: at most 7 (128 bits).
ULID_PATTERN = "[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}"
#: The largest integer id (content types, page numbers): 32 bits on every backend.
MAX_ID = 2**31 - 1

metadata = sa.MetaData()


class ULIDType(sa.types.TypeDecorator[str]):
    """A ULID stored as ``uuid`` (PostgreSQL) or its hex digits, read back as its 26-character
    Crockford base32 string.

    Bound values may be a ``ULID``, its 16 bytes, its 26-character text or its hex (with or
    without a UUID's dashes). A stored value that is not a ULID (a row written by something
    else) is read back as it is stored instead of failing the read.
    """

    impl = sa.types.CHAR(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.CHAR(32, charset="ascii", collation="ascii_bin"))
        return dialect.type_descriptor(sa.types.CHAR(32))

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return ulid_hex(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        text = str(value).replace("-", "")
        try:
            raw = bytes.fromhex(text)
            if len(raw) != 16:
                raise ValueError(text)
            return ulid_text(raw)
        except ValueError:  # not written by auditlog: shown as stored rather than failing
            return str(value)


def ulid_hex(value: Any) -> str:
    """The 32 hex digits a ULID is stored as, from a ``ULID``, 16 bytes or the ULID's text."""
    if isinstance(value, str) and len(value) == 26:
        return f"{ulid_int(value):032x}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, ULID):
        raw = bytes(value.bytes)
    else:
        text = str(value).replace("-", "")
        raw = bytes(ULID.from_str(text).bytes) if len(text) == 26 else bytes.fromhex(text)
    if len(raw) != 16:
        raise ValueError(f"a ULID is 16 bytes, got {len(raw)}: {raw!r}")
    return raw.hex()


def schema_is_current(connection: Connection) -> None:
    """Refuse an ``audit_log`` made before 0.2 (binary ids, no ``renamed_to``): the migration is
    in docs/tables.md. On SQLite, where a column takes any value whatever its declared type, the
    id values are looked at."""
    columns = {c["name"]: c["type"] for c in sa.inspect(connection).get_columns("audit_log")}
    if "renamed_to" not in columns:
        raise ConfigurationError(
            "audit_log has no renamed_to column, as tables made by auditlog before 0.2 did not: "
            'migrate it first (docs/tables.md, "Migrating from 0.1")'
        )
    for name in ("id", "transaction_id"):
        if name not in columns:
            continue
        if connection.dialect.name == "sqlite":  # any column takes any value: look at them
            found = connection.exec_driver_sql(
                f"SELECT 1 FROM audit_log WHERE typeof({name}) = 'blob' LIMIT 1"
            )
            binary = found.first() is not None
        else:
            try:
                binary = columns[name].python_type is bytes
            except NotImplementedError:
                binary = False
        if binary:
            raise ConfigurationError(
                f"audit_log.{name} holds binary ids, as tables made by auditlog before 0.2 did: "
                'migrate it first (docs/tables.md, "Migrating from 0.1")'
            )


_UTC_MIN = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_UTC_MAX = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def utc_bound(moment: dt.datetime) -> dt.datetime:
    """A time a query is bounded by, in UTC (naive: already UTC); one beyond the years 1 to
    9999 once in UTC (``0001-01-01T00:00+05:00``) is the nearest representable time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:
        return _UTC_MIN if moment.year == 1 else _UTC_MAX


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes with microseconds on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError("audit timestamps must be timezone-aware")
        utc: dt.datetime = value.astimezone(dt.timezone.utc)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)  # type: ignore[no-any-return]
        return value.astimezone(dt.timezone.utc)  # type: ignore[no-any-return]


#: JSON on every backend, JSONB on PostgreSQL.
JSONState = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)


class ExactString(sa.types.TypeDecorator[str]):
    """A string compared byte for byte on every backend.

    MariaDB's and MySQL's default collations ignore case and trailing spaces: tenant ``ACME``
    would match ``acme``, and ``"acme "`` would match ``"acme"``: holes in tenant scoping. The
    column gets a binary collation without padding there (``utf8mb4_nopad_bin`` on MariaDB,
    ``utf8mb4_0900_bin`` on MySQL 8).
    """

    impl = sa.String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        length = cast(sa.String, self.impl_instance).length
        if dialect.name in {"mysql", "mariadb"}:
            mariadb = dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False)
            collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
            return dialect.type_descriptor(
                mysql.VARCHAR(length, charset="utf8mb4", collation=collation)
            )
        return dialect.type_descriptor(sa.String(length))


def _exact(length: int) -> ExactString:
    return ExactString(length)


class _Base(DeclarativeBase):
    metadata = metadata


class ContentType(_Base):
    """One stable integer per audited model, shared by every process using the database."""

    __tablename__ = "audit_content_type"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    #: the model's identity: ``module.QualifiedName`` of the mapped class
    name: Mapped[str] = mapped_column(_exact(255), unique=True)
    #: the table the model maps to (informative)
    table_name: Mapped[str | None] = mapped_column(sa.String(255))

    def __repr__(self) -> str:
        return f"ContentType(id={self.id!r}, name={self.name!r})"


class AuditLog(_Base):
    """One audit entry: who did which action to which object, when, from where, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(ULIDType(), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(_exact(64))
    user_id: Mapped[str | None] = mapped_column(_exact(255))
    action_type: Mapped[str] = mapped_column(_exact(16))
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ip_address: Mapped[str | None] = mapped_column(_exact(45))
    user_agent: Mapped[str] = mapped_column(sa.String(512), default="")
    object_id: Mapped[str] = mapped_column(_exact(512))
    content_type: Mapped[int] = mapped_column(sa.ForeignKey(ContentType.id))
    before_state: Mapped[dict[str, Any] | None] = mapped_column(JSONState, nullable=True)
    after_state: Mapped[dict[str, Any] | None] = mapped_column(JSONState, nullable=True)
    #: the recorded attributes an update changed (null for other actions)
    changed_fields: Mapped[list[str] | None] = mapped_column(JSONState, nullable=True)
    #: ULID shared by every entry written in the same database transaction
    transaction_id: Mapped[str | None] = mapped_column(ULIDType())
    #: extra keyword values given to audit_context(), or null
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONState, nullable=True)
    #: an update that changed the object's primary key: the ``object_id`` it has since
    #: (``object_id`` is the one it had), so that the object is followed under both
    renamed_to: Mapped[str | None] = mapped_column(_exact(512), nullable=True)

    __table_args__ = (
        sa.CheckConstraint(
            sa.column("action_type").in_(ACTION_TYPES), name="ck_audit_log_action_type"
        ),
        # Each filter but object_id, scoped by tenant, read newest first (timestamp, id).
        sa.Index("ix_audit_log_tenant_time", "tenant_id", "timestamp", "id"),
        sa.Index("ix_audit_log_tenant_user", "tenant_id", "user_id", "timestamp", "id"),
        sa.Index("ix_audit_log_tenant_ip", "tenant_id", "ip_address", "timestamp", "id"),
        sa.Index("ix_audit_log_tenant_action", "tenant_id", "action_type", "timestamp", "id"),
        sa.Index("ix_audit_log_tenant_ctype", "tenant_id", "content_type", "timestamp", "id"),
        # One object's history: in a tenant (the object_id filter), or across tenants (a few
        # rows to sort). One index for both, one fewer to write per entry.
        sa.Index("ix_audit_log_object", "object_id", "tenant_id", "timestamp", "id"),
        # Unscoped reads newest first (apps without tenants, a time window, cursor pages over all).
        sa.Index("ix_audit_log_time", "timestamp", "id"),
        # Objects whose key changed, under the key they took (few rows: partial where it can be).
        sa.Index(
            "ix_audit_log_renamed",
            "renamed_to",
            "timestamp",
            "id",
            postgresql_where=sa.text("renamed_to IS NOT NULL"),
            sqlite_where=sa.text("renamed_to IS NOT NULL"),
        ),
    )

    def __repr__(self) -> str:
        return (
            f"AuditLog(id={self.id!r}, action_type={self.action_type!r}, "
            f"object_id={self.object_id!r}, user_id={self.user_id!r})"
        )


#: The tables themselves, for Core statements.
audit_log_table = cast(sa.Table, AuditLog.__table__)
content_type_table = cast(sa.Table, ContentType.__table__)


def create_tables(bind: Engine | Connection, *, partitioned: bool = False) -> None:
    """Create ``audit_log`` and ``audit_content_type`` with their indexes; harmless when they
    exist. Tables made before 0.2 (binary ids) are refused with the migration to run.

    ``partitioned=True`` (PostgreSQL only) creates ``audit_log`` partitioned by month, with
    this month's and the next three months' partitions (docs/partitions.md)."""
    if partitioned:
        from .lifecycle.partitions import create_partitioned_tables

        create_partitioned_tables(bind)
    metadata.create_all(bind, checkfirst=True)
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            schema_is_current(connection)
    else:
        schema_is_current(bind)
