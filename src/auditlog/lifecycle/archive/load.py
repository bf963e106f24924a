"""Importing an archive into a database: checked first, then written in one transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from ulid import ULID

from ...integrity.tables import seal_entry_table as _member
from ...integrity.tables import seal_table as _seal
from ...models import audit_log_table as _log
from ...models import content_type_table as _ctype
from ..tables import prune_entry_table as _pruned
from ..tables import prune_table as _prune
from .records import ArchiveError
from .verify import ArchiveFile, entry_values

__all__ = ["ImportResult", "import_archive"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What :func:`import_archive` wrote: ``entries`` inserted (``skipped`` were there already),
    ``seals`` inserted (``seals_skipped`` were there already), ``content_types`` inserted, and
    ``gone``: members of the imported seals that the archive does not hold, recorded as gone in
    the ``audit_prune`` row ``prune_id`` (kind ``import``)."""

    entries: int
    skipped: int
    seals: int
    seals_skipped: int
    content_types: int
    gone: int
    prune_id: str | None


def import_archive(
    bind: Engine | Connection, path: str | Path, *, batch_size: int = 1_000
) -> ImportResult:
    """Write an archive into a database, in one transaction: its tables made when missing, the
    archive's trailer checked first (a damaged archive is refused, nothing written), content
    types and seals checked against the database's (a conflict is refused, nothing written);
    entries and seals already there are skipped. See docs/archives.md."""
    seals: dict[int, str] = {}
    archive = ArchiveFile(path)
    try:
        for record in archive.records():
            _check_record(record)
            if record["record"] == "seal":
                seals[record["seq"]] = record["digest"]
        _check_types(archive.header["content_types"])
    except ArchiveError as exc:
        raise ArchiveError(f"refused, nothing imported: {exc}") from None
    except _MALFORMED as exc:
        raise _refused(path, exc) from None
    damaged = archive.trailer_problems()
    if damaged:
        raise ArchiveError(f"refused, nothing imported: {damaged[0].detail}")
    try:
        if isinstance(bind, Engine):
            with bind.connect() as connection:
                return _import(connection, archive, seals, batch_size)
        return _import(bind, archive, seals, batch_size)
    except (*_MALFORMED, sa.exc.DataError, sa.exc.IntegrityError) as exc:
        # a value the database refuses (rolled back with the rest)
        raise _refused(path, exc) from None


#: What reading a record that no archive holds raises.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


def _refused(path: str | Path, exc: BaseException) -> ArchiveError:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
    return ArchiveError(
        f"refused, nothing imported: {str(path)!r} holds a record no archive has "
        f"({type(exc).__name__}: {reason})"
    )


def _check_record(record: dict[str, Any]) -> None:
    """A record's fields as an export writes them; a ValueError or TypeError naming the first
    that is not."""
    kind = record["record"]
    if kind == "entry":
        ULID.from_str(record["id"])
        values = entry_values(record)
        if values["timestamp"].tzinfo is None:
            raise ValueError(f"entry {record['id']}: timestamp without a UTC offset")
        for name in _TEXTS:
            if values[name] is not None and not isinstance(values[name], str):
                raise TypeError(f"entry {record['id']}: {name} is not text")
        if values["transaction_id"] is not None:
            ULID.from_str(values["transaction_id"])
        content_type = values["content_type"]
        if content_type is not None and (
            not isinstance(content_type, int) or isinstance(content_type, bool)
        ):
            raise TypeError(f"entry {record['id']}: content_type is not an integer")
        _optional_int(record, "seal")
    elif kind == "seal":
        for name in ("seq", "entries"):
            if not isinstance(record[name], int) or isinstance(record[name], bool):
                raise TypeError(f"seal {record['seq']!r}: {name} is not an integer")
        if not 1 <= record["seq"] <= _INT_MAX or not 0 <= record["entries"] <= _INT_MAX:
            raise ValueError(f"seal {record['seq']}: seq or entries out of range")
        if dt.datetime.fromisoformat(record["sealed_at"]).tzinfo is None:
            raise ValueError(f"seal {record['seq']}: sealed_at without a UTC offset")
        members = record["members"]
        if members is not None and not all(
            isinstance(m, list) and len(m) == 2 and all(isinstance(v, str) for v in m)
            for m in members
        ):
            raise TypeError(f"seal {record['seq']}: members are not [entry id, digest] pairs")
        if not all(isinstance(v, str) for v in record["pruned"]):
            raise TypeError(f"seal {record['seq']}: pruned is not a list of entry ids")


def _check_types(archived: Any) -> None:
    if not isinstance(archived, list) or not all(
        isinstance(item, dict)
        and isinstance(item.get("id"), int)
        and isinstance(item.get("name"), str)
        for item in archived
    ):
        raise TypeError("the header's content_types are not a list of {id, name}")


def _optional_int(record: dict[str, Any], name: str) -> None:
    value = record.get(name)
    if value is not None and (not isinstance(value, int) or not 1 <= value <= _INT_MAX):
        raise ValueError(f"entry {record['id']}: {name} is not a seal number")


_INT_MAX = 2**31 - 1  # the seal tables' integer columns
_TEXTS = (
    "tenant_id",
    "user_id",
    "action_type",
    "ip_address",
    "user_agent",
    "object_id",
    "transaction_id",
    "renamed_to",
)


def _import(
    connection: Connection, archive: ArchiveFile, seals: dict[int, str], batch_size: int
) -> ImportResult:
    from ...integrity.guard import maintenance
    from ...models import create_tables

    create_tables(connection)
    connection.commit()
    with connection.begin(), maintenance(connection):
        types = _check_content_types(connection, archive.header["content_types"])
        new_seals = _check_seals(connection, seals)
        if types:
            connection.execute(sa.insert(_ctype), types)
        run = _Import(connection, archive, new_seals, batch_size)
        run.write()
    return ImportResult(
        run.inserted,
        run.skipped,
        len(new_seals),
        len(seals) - len(new_seals),
        len(types),
        run.gone,
        run.prune_id if run.gone else None,
    )


def _check_content_types(
    connection: Connection, archived: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The archive's content types that the database lacks; an ArchiveError when one's id or
    name is the database's for another (the digests cover the id: it cannot change)."""
    ids = {r.id: r.name for r in connection.execute(sa.select(_ctype.c.id, _ctype.c.name))}
    names = {name: id_ for id_, name in ids.items()}
    missing = []
    for item in archived:
        id_, name = item["id"], item["name"]
        if ids.get(id_) == name:
            continue
        if id_ in ids:
            raise ArchiveError(
                f"refused, nothing imported: content type {id_} is {ids[id_]!r} in the database and {name!r} in the archive"
            )
        if name in names:
            raise ArchiveError(
                f"refused, nothing imported: content type {name!r} is {names[name]} in the database and {id_} in the archive"
            )
        missing.append({"id": id_, "name": name, "table_name": item.get("table_name")})
    return missing


def _check_seals(connection: Connection, seals: dict[int, str]) -> set[int]:
    """The archive's seals that the database lacks; an ArchiveError when it holds another seal
    under one of their numbers (its chain is not the archive's)."""
    held = {r[0]: r[1] for r in connection.execute(sa.select(_seal.c.seq, _seal.c.digest))}
    for seq, digest in seals.items():
        if seq in held and held[seq] != digest:
            raise ArchiveError(
                f"refused, nothing imported: this database's seal {seq} is not the archive's seal {seq} (its chain of seals differs from the archive's)"
            )
    return {seq for seq in seals if seq not in held}


class _Import:
    """The second pass: entries (and their memberships of new seals) by batches, then the seals
    with their other members, and the gone ones recorded."""

    def __init__(
        self, connection: Connection, archive: ArchiveFile, new_seals: set[int], batch_size: int
    ) -> None:
        self.connection, self.archive, self.new_seals = connection, archive, new_seals
        self.batch_size = batch_size
        self.inserted = self.skipped = self.gone = 0
        self.prune_id = str(ULID())
        self.started = dt.datetime.now(dt.timezone.utc)

    def write(self) -> None:
        batch: list[dict[str, Any]] = []
        for record in self.archive.records():
            if record["record"] == "entry":
                batch.append(record)
                if len(batch) >= self.batch_size:
                    self._entries(batch)
                    batch = []
            elif record["record"] == "seal":
                if batch:
                    self._entries(batch)
                    batch = []
                if record["seq"] in self.new_seals:
                    self._seal(record)
        if batch:
            self._entries(batch)
        if self.gone:
            self.connection.execute(
                sa.insert(_prune).values(
                    id=self.prune_id,
                    kind="import",
                    started_at=self.started,
                    finished_at=dt.datetime.now(dt.timezone.utc),
                    pruned_before=None,
                    tenant_id=None,
                    entries=0,
                    sealed=self.gone,
                    reason=f"import of {self.archive.reader.path.name}: sealed entries it does not hold"[
                        :512
                    ],
                )
            )

    def _entries(self, batch: list[dict[str, Any]]) -> None:
        ids = [record["id"] for record in batch]
        there = set(
            self.connection.execute(sa.select(_log.c.id).where(_log.c.id.in_(ids))).scalars()
        )
        members = {
            r[0]: r[1]
            for r in self.connection.execute(
                sa.select(_member.c.entry_id, _member.c.entry_key).where(
                    _member.c.entry_id.in_(ids)
                )
            )
        }
        rows = [entry_values(r) for r in batch if r["id"] not in there]
        if rows:
            self.connection.execute(sa.insert(_log), rows)
        self.inserted += len(rows)
        self.skipped += len(batch) - len(rows)
        joined = [
            {
                "entry_id": r["id"],
                "seal_seq": r["seal"],
                "entry_key": r["entry_key"],
                "digest": r["digest"],
                "erased": r["erased"],
            }
            for r in batch
            if r.get("seal") in self.new_seals and r["id"] not in members
        ]
        if joined:
            self.connection.execute(sa.insert(_member), joined)
        for r in batch:  # a member recorded without its key by an earlier import (from a seal's
            # member list): its key now, or what an erasure kept of its keys and digests
            known = r.get("entry_key") is not None or r.get("erased") is not None
            if r["id"] in members and members[r["id"]] is None and known:
                self.connection.execute(
                    sa.update(_member)
                    .where(_member.c.entry_id == r["id"], _member.c.erased.is_(None))
                    .values(entry_key=r["entry_key"], erased=r["erased"])
                )

    def _seal(self, record: dict[str, Any]) -> None:
        connection, seq = self.connection, record["seq"]
        connection.execute(
            sa.insert(_seal).values(
                seq=seq,
                sealed_at=dt.datetime.fromisoformat(record["sealed_at"]),
                entries=record["entries"],
                entries_digest=record["entries_digest"],
                previous=record["previous"],
                digest=record["digest"],
            )
        )
        held = set(
            connection.execute(
                sa.select(_member.c.entry_id).where(_member.c.seal_seq == seq)
            ).scalars()
        )
        pruned = set(record["pruned"])
        others = [
            (entry_id, digest)
            for entry_id, digest in record["members"] or ()  # null: all of them archived
            if entry_id not in held
        ]
        for start in range(0, len(others), self.batch_size):
            chunk = others[start : start + self.batch_size]
            ids = [entry_id for entry_id, _ in chunk]
            taken = set(
                connection.execute(
                    sa.select(_member.c.entry_id).where(_member.c.entry_id.in_(ids))
                ).scalars()
            )
            rows = [
                {"entry_id": e, "seal_seq": seq, "entry_key": None, "digest": d, "erased": None}
                for e, d in chunk
                if e not in taken
            ]
            if rows:
                connection.execute(sa.insert(_member), rows)
            present = set(
                connection.execute(sa.select(_log.c.id).where(_log.c.id.in_(ids))).scalars()
            )
            listed = set(
                connection.execute(
                    sa.select(_pruned.c.entry_id).where(_pruned.c.entry_id.in_(ids))
                ).scalars()
            )
            gone = [
                {"entry_id": e, "prune_id": self.prune_id}
                for e in ids
                if e not in present and e not in listed and (e in pruned or self.archive.outside(e))
            ]
            if gone:
                connection.execute(sa.insert(_pruned), gone)
            self.gone += len(gone)
