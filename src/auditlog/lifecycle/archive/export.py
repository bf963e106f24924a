"""Writing an archive: every entry older than a date, in a file that proves itself.

:func:`export_archive` writes a header (the selection, the content types), the entries in id
order with their seal membership, every seal up to the newest that holds an exported entry with
all its members, and a trailer (counts and a SHA-256 over the records). It reads the log a page
at a time along the primary key (``pages.py``), in one snapshot, in constant memory.
``records.py`` describes the record stream.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ...integrity.tables import seal_entry_table as _member
from ...integrity.tables import seal_table as _seal
from ...models import audit_log_table as _log
from ...models import content_type_table as _ctype
from ...ulids import ulid_floor, ulid_texts
from ..prune import cutoff
from ..tables import prune_entry_table as _pruned
from ..tables import prune_table as _prune
from .pages import entry_pages, prefetched, processed
from .records import ENTRY, NAME, VERSION, ArchiveError, iso_time, ulid_text
from .writers import open_writer

__all__ = ["PAGE_SIZE", "ExportResult", "export_archive", "id_floor"]

#: Entries read per query by default.
PAGE_SIZE = 10_000
#: Where an entry row holds its seal.
_SEAL = ENTRY.index("seal")


class ExportResult:
    """What :func:`export_archive` wrote: ``entries`` and ``seals`` records, of which
    ``sealed`` entries were sealed; ``before`` is the selection's end (to the millisecond)."""

    __slots__ = ("before", "entries", "format", "sealed", "seals")

    def __init__(self, form: str, before: dt.datetime, entries: int, sealed: int, seals: int):
        self.format, self.before = form, before
        self.entries, self.sealed, self.seals = entries, sealed, seals

    def __repr__(self) -> str:
        return (
            f"ExportResult(format={self.format!r}, before={self.before.isoformat()!r}, "
            f"entries={self.entries}, sealed={self.sealed}, seals={self.seals})"
        )


def id_floor(moment: dt.datetime) -> str:
    """The smallest entry id of ``moment``'s millisecond: entries older have smaller ids."""
    return ulid_floor(moment)


def _has(connection: Connection, *tables: sa.Table) -> bool:
    inspector = sa.inspect(connection)
    return all(inspector.has_table(table.name) for table in tables)


def _whole_log_cutoff(connection: Connection) -> int:
    """The newest whole-log prune's cutoff, in milliseconds (-1 when none)."""
    found = connection.execute(
        sa.select(sa.func.max(_prune.c.pruned_before)).where(
            _prune.c.kind == "prune", _prune.c.tenant_id.is_(None)
        )
    ).scalar_one()
    if found is None:
        return -1
    found = found if found.tzinfo else found.replace(tzinfo=dt.timezone.utc)
    return int(found.timestamp() * 1000)


def _seal_records(connection: Connection, newest: int, archived: Counter[int]) -> Any:
    """Every seal up to ``newest``, with all its members and those gone by a recorded prune
    (listed by one, or older than a whole-log prune's cutoff); the members left out (null) of
    a seal whose ``archived`` entries (how many the archive holds, per seal) are all of them."""
    postgresql = connection.dialect.name == "postgresql"
    gone: Any = sa.literal(0)
    if _has(connection, _prune, _pruned):
        # Only a member a prune accounts for can be gone: listed by a prune, or older than a
        # whole-log prune's cutoff; the log is looked up for those alone (an index probe each),
        # not joined with every member.
        listed: Any = _member.c.entry_id.in_(sa.select(_pruned.c.entry_id))
        cutoff_ms = _whole_log_cutoff(connection)
        if cutoff_ms >= 0:
            floor = ulid_text(cutoff_ms.to_bytes(6, "big") + bytes(10))
            listed = sa.or_(listed, _member.c.entry_id < floor)
        present = sa.exists().where(_log.c.id == _member.c.entry_id)
        gone = sa.case((sa.and_(listed, ~present), 1), else_=0)
    entry_id = (
        sa.func.uuid_send(_member.c.entry_id)
        if postgresql
        else sa.type_coerce(_member.c.entry_id, sa.String)
    )
    query = sa.select(entry_id, _member.c.digest, gone).order_by(_member.c.entry_id)
    seals = connection.execute(sa.select(_seal).where(_seal.c.seq <= newest).order_by("seq")).all()
    query = query.where(_member.c.seal_seq == sa.bindparam("seq", type_=sa.Integer))
    if postgresql:  # the driver's cursor, plain tuples, one seal ahead
        compiled = query.compile(connection)
        cursor = connection.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]

        params = processed(compiled, compiled.construct_params({"seq": 0}))

        def members(seq: int) -> list[Any]:
            cursor.execute(str(compiled), {**params, "seq": seq})
            return list(cursor.fetchall())

    else:

        def members(seq: int) -> list[Any]:
            return list(connection.execute(query, {"seq": seq}).all())

    def records() -> Iterator[list[dict[str, Any]]]:
        for row in seals:
            listed: list[list[str]] | None = None
            pruned: list[str] = []
            if archived[row.seq] != row.entries:  # members outside the archive: all listed
                held = members(row.seq)
                raws = [r[0] if postgresql else bytes.fromhex(r[0]) for r in held]
                texts = ulid_texts(raws)
                listed = [[text, r[1]] for text, r in zip(texts, held, strict=True)]
                pruned = [text for text, r in zip(texts, held, strict=True) if r[2]]
            yield [
                {
                    "seq": row.seq,
                    "sealed_at": iso_time(row.sealed_at),
                    "entries": row.entries,
                    "entries_digest": row.entries_digest,
                    "previous": row.previous,
                    "digest": row.digest,
                    "members": listed,
                    "pruned": pruned,
                }
            ]

    for page in prefetched(records()) if postgresql else records():
        yield from page


def export_archive(
    bind: Engine | Connection,
    output: str | Path | IO[bytes],
    *,
    format: str = "jsonl",
    before: dt.datetime | None = None,
    tenant_id: str | None = None,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write every entry older than ``before`` (now by default; to the millisecond), of
    ``tenant_id`` only when given, to ``output`` (a path or a binary stream) as an archive in
    ``format`` (jsonl, csv or parquet). ``progress`` is called with the count after each page."""
    moment = cutoff(before or dt.datetime.now(dt.timezone.utc), what="export_archive(): before")
    if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
        raise ValueError(
            f"export_archive(): page_size must be a positive integer, not {page_size!r}"
        )
    if tenant_id is not None and (not isinstance(tenant_id, str) or not tenant_id):
        raise ValueError(
            f"export_archive(): tenant_id must be a non-empty string, not {tenant_id!r}"
        )
    if isinstance(output, (str, Path)):
        try:
            with open(output, "wb") as file:
                return export_archive(
                    bind,
                    file,
                    format=format,
                    before=moment,
                    tenant_id=tenant_id,
                    page_size=page_size,
                    progress=progress,
                )
        except OSError as exc:
            raise ArchiveError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    writer = open_writer(format, output)
    try:
        if isinstance(bind, Engine):
            options: dict[str, Any] = {}
            if bind.dialect.name in ("postgresql", "mysql", "mariadb"):
                options["isolation_level"] = "REPEATABLE READ"  # one snapshot: entries match seals
            with bind.connect().execution_options(**options) as connection, connection.begin():
                return _export(connection, writer, moment, tenant_id, page_size, progress, format)
        return _export(bind, writer, moment, tenant_id, page_size, progress, format)
    except BaseException:
        writer.abandon()
        raise


def _export(
    connection: Connection,
    writer: Any,
    moment: dt.datetime,
    tenant_id: str | None,
    page_size: int,
    progress: Callable[[int], None] | None,
    form: str,
) -> ExportResult:
    sealed = _has(connection, _seal, _member)
    postgresql = connection.dialect.name == "postgresql"
    writer.record(
        "header",
        {
            "format": NAME,
            "version": VERSION,
            "exported_at": iso_time(dt.datetime.now(dt.timezone.utc)),
            "dialect": connection.dialect.name,
            "before": iso_time(moment),
            "tenant_id": tenant_id,
            "content_types": [
                {"id": r.id, "name": r.name, "table_name": r.table_name}
                for r in connection.execute(sa.select(_ctype).order_by(_ctype.c.id))
            ],
        },
    )
    source = _log.outerjoin(_member, _member.c.entry_id == _log.c.id) if sealed else _log
    conditions = [_log.c.timestamp < moment, _log.c.id < id_floor(moment)]
    if tenant_id is not None:
        conditions.append(_log.c.tenant_id == tenant_id)
    done = in_seals = newest = 0
    archived: Counter[int] = Counter()
    for rows in entry_pages(connection, sealed, source, conditions, page_size):
        writer.entries(rows, ids_as_bytes=postgresql)
        seals = [int(row[_SEAL]) for row in rows if row[_SEAL] is not None]
        archived.update(seals)
        in_seals += len(seals)
        newest = max(newest, *seals) if seals else newest
        done += len(rows)
        if progress is not None:
            progress(done)
    seal_count = 0
    if sealed and newest:
        for record in _seal_records(connection, newest, archived):
            writer.record("seal", record)
            seal_count += 1
    writer.close()
    return ExportResult(form, moment, done, in_seals, seal_count)
