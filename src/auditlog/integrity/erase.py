"""Erasure: one data subject's values removed from the log, with the log still provable.

Two subjects:

- an **actor** (``user_id=``): in every entry that user made, the user id, the address, the user
  agent and ``extra`` (what the request recorded about them);
- an **object** (``content_type=`` and ``object_id=``): in every entry of that object, under the
  key it has and under each key it had before a change of its key, the key itself
  (``object_id`` becomes empty text, ``renamed_to`` null) and the before and after states.

In one transaction, past the guard (:func:`~auditlog.integrity.guard.maintenance`): each sealed
entry is first checked against its seal (an entry that is not as sealed is refused: run
``verify``); the digests of its erased fields are kept and the keys of its other personal fields
too, and the entry's own key is dropped, so that ``verify`` still proves every field and reports
the erased ones as erased, while nothing stored lets anyone test a guess of an erased value. The
values are then set to null (the user agent to empty text) and the erasure is recorded in
``audit_erasure``: when, which kind, which fields, how many entries, why and by whom, never whose.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from ulid import ULID

from ..exceptions import AuditLogError
from ..models import MAX_ID, content_type_table
from ..models import audit_log_table as _log
from ..registry import model_name
from ..serialize import object_id_of
from .digest import (
    entry_cells,
    erasure_record,
    field_digest,
    field_keys,
    from_hex,
    row_columns,
    sealed_version,
)
from .guard import maintenance
from .seal import create_integrity_tables
from .tables import erasure_table, seal_entry_table

__all__ = ["ACTOR_FIELDS", "OBJECT_FIELDS", "ErasureError", "ErasureResult", "erase"]

#: What is erased of an actor, and of an object.
ACTOR_FIELDS: tuple[str, ...] = ("user_id", "ip_address", "user_agent", "extra")
OBJECT_FIELDS: tuple[str, ...] = ("object_id", "renamed_to", "before_state", "after_state")
_EMPTY = {"user_agent": "", "object_id": ""}  # NOT NULL: empty text
#: How many changes of its key an erased object's entries are followed back through.
MAX_RENAMES = 100


class ErasureError(AuditLogError):
    """An erasure that was refused; nothing was changed."""


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What :func:`erase` did: the erasure's id (its row in ``audit_erasure``) and how many
    entries it changed."""

    erasure_id: str
    entries: int
    fields: tuple[str, ...]


def erase(
    bind: Engine | Connection,
    *,
    user_id: str | None = None,
    content_type: int | str | type | None = None,
    object_id: Any = None,
    reason: str | None = None,
    erased_by: str | None = None,
) -> ErasureResult:
    """Erase an actor (``user_id``) or an object (``content_type`` and ``object_id``) from the
    log; see the module's documentation. An engine commits on its own; a connection's
    transaction is the caller's to commit."""
    if (user_id is None) == (object_id is None and content_type is None):
        raise ValueError(
            "erase(): give user_id (an actor) or content_type and object_id (an object), "
            "not both and not neither"
        )
    if user_id is None and (object_id is None or content_type is None):
        raise ValueError("erase(): an object is named by both content_type and object_id")
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            create_integrity_tables(connection)
            with connection.begin():
                return _erase(connection, user_id, content_type, object_id, reason, erased_by)
    if not bind.in_transaction():
        with bind.begin():
            return _erase(bind, user_id, content_type, object_id, reason, erased_by)
    return _erase(bind, user_id, content_type, object_id, reason, erased_by)


def _content_type_id(connection: Connection, content_type: int | str | type) -> int:
    """The id of the audited model named by its content type id, its class or its name; a
    ValueError naming it when the database has no such model."""
    table = content_type_table
    if isinstance(content_type, int) and not isinstance(content_type, bool):
        where = table.c.id == content_type if 1 <= content_type <= MAX_ID else sa.false()
        missing = f"has the id {content_type}"
    else:
        name = model_name(content_type) if isinstance(content_type, type) else str(content_type)
        where, missing = table.c.name == name, f"is named {name!r}"
    found = connection.execute(sa.select(table.c.id).where(where)).scalar_one_or_none()
    if found is None:
        raise ValueError(f"erase(): content_type: no audited model {missing}")
    return int(found)


def _erase(
    connection: Connection,
    user_id: str | None,
    content_type: int | str | type | None,
    object_id: Any,
    reason: str | None,
    erased_by: str | None,
) -> ErasureResult:
    if user_id is not None:
        kind, fields, ctype = "actor", ACTOR_FIELDS, None
        where = _log.c.user_id == str(user_id)
    else:
        assert content_type is not None
        kind, fields = "object", OBJECT_FIELDS
        ctype = _content_type_id(connection, content_type)
        where = _object_entries(connection, ctype, object_id_of(object_id))
    m = seal_entry_table
    rows = (
        connection.execute(
            sa.select(
                *row_columns(_log),
                m.c.entry_id.label("m_id"),
                m.c.entry_key,
                m.c.digest,
                m.c.erased,
            )
            .select_from(_log.outerjoin(m, m.c.entry_id == _log.c.id))
            .where(where)
            .order_by(_log.c.id)
        )
        .mappings()
        .all()
    )
    with maintenance(connection):
        for row in rows:
            if row["m_id"] is not None:
                _keep_proof(connection, row, fields)
        ids = [row["id"] for row in rows]
        for start in range(0, len(ids), 1000):
            connection.execute(
                sa.update(_log)
                .where(_log.c.id.in_(ids[start : start + 1000]))
                .values({name: _EMPTY.get(name) for name in fields})
            )
        erasure_id = str(ULID())
        connection.execute(
            sa.insert(erasure_table).values(
                id=erasure_id,
                erased_at=dt.datetime.now(dt.timezone.utc),
                kind=kind,
                content_type=ctype,
                fields=",".join(fields),
                entries=len(rows),
                reason=reason,
                erased_by=erased_by,
            )
        )
    return ErasureResult(erasure_id, len(rows), fields)


def _object_entries(connection: Connection, ctype: int, key: str) -> sa.ColumnElement[bool]:
    """Every entry of the object of ``ctype`` keyed ``key`` now: under that key, and under each
    key it had before, up to the entry that changed it (a key given up may be taken by another
    object later: its entries after the change are not this object's)."""
    t = _log.c
    kind = t.content_type == ctype
    found: list[sa.ColumnElement[bool]] = [sa.or_(t.object_id == key, t.renamed_to == key)]
    todo: list[tuple[str, Any]] = [(key, None)]
    seen = {key}
    while todo:
        now, until = todo.pop()
        renames = sa.select(t.object_id, t.timestamp, t.id).where(kind, t.renamed_to == now)
        if until is not None:
            renames = renames.where(until)
        for old, moment, entry in connection.execute(renames):
            if old in seen:
                continue
            if len(seen) > MAX_RENAMES:
                raise ErasureError(
                    f"erase(): the object {key!r} changed its key more than {MAX_RENAMES} times; "
                    "nothing was erased"
                )
            seen.add(old)
            up_to = sa.or_(t.timestamp < moment, sa.and_(t.timestamp == moment, t.id <= entry))
            found.append(sa.and_(t.object_id == old, up_to))
            todo.append((old, up_to))
    return sa.and_(kind, sa.or_(*found))


def _keep_proof(connection: Connection, row: Any, fields: tuple[str, ...]) -> None:
    """A sealed entry: check it against its seal, keep its erased fields' digests and its other
    fields' keys, drop its key."""
    key = from_hex(row["entry_key"], 16)
    erasure = erasure_record(row["erased"]) if row["entry_key"] is None else None
    sealed = from_hex(row["digest"], 32)
    # the version of the digests it was sealed under: the one that matches
    version = sealed_version(entry_cells(row), sealed, key=key, erasure=erasure)
    if version is None:  # not as sealed, or its seal's record of it was changed
        raise ErasureError(
            f"erase(): entry {ULID.from_hex(_hex(row['id']))} is not as sealed; nothing was "
            "erased (run auditlog verify)"
        )
    if key is not None:
        keys = {name: k.hex() for name, k in field_keys(key, version).items()}
        digests: dict[str, str] = {}
    else:
        assert erasure is not None
        keys, digests = dict(erasure[0]), dict(erasure[1])
    for name in fields:
        if name in keys:
            field = bytes.fromhex(keys.pop(name))
            digests[name] = field_digest(field, name, row[name], version).hex()
    connection.execute(
        sa.update(seal_entry_table)
        .where(seal_entry_table.c.entry_id == row["m_id"])
        .values(entry_key=None, erased=json.dumps({"keys": keys, "digests": digests}))
    )


def _hex(value: Any) -> str:
    return str(value).replace("-", "").lower()
