"""Archives: every entry older than a date, in a file that proves itself and can be imported back.

:func:`export_archive` writes a header (the selection, the content types), the entries in id
order with their seal membership, every seal up to the newest that holds an exported entry with
all its members, and a trailer (counts and a SHA-256 over the records). It reads the log a page
at a time along the primary key, in one snapshot, in constant memory.
:func:`verify_archive` recomputes what ``auditlog.verify`` recomputes, from the file alone;
:func:`import_archive` writes an archive into a database. See docs/archives.md, and
``formats.py`` for the file formats.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from ulid import ULID

from ..integrity.digest import FIELDS, GENESIS, entries_digest, seal_digest
from ..integrity.tables import seal_entry_table as _member
from ..integrity.tables import seal_table as _seal
from ..models import audit_log_table as _log
from ..models import content_type_table as _ctype
from .formats import ENTRY, NAME, VERSION, ArchiveError, ArchiveReader, open_writer, ulid_text
from .prune import cutoff
from .tables import prune_entry_table as _pruned
from .tables import prune_table as _prune

if TYPE_CHECKING:
    from ..integrity.verify import Problem, VerifyReport

__all__ = [
    "PAGE_SIZE",
    "ExportResult",
    "ImportResult",
    "export_archive",
    "id_floor",
    "import_archive",
    "verify_archive",
]

#: Entries read per query by default.
PAGE_SIZE = 10_000
#: The columns of ``audit_log`` an entry record holds: those its digest covers, in order.
_NAMES = FIELDS
#: Where an entry row holds its id, time, transaction id and seal.
_ID, _TIME, _TXN, _SEAL = (
    ENTRY.index(name) for name in ("id", "timestamp", "transaction_id", "seal")
)
_JSON = ("before_state", "after_state", "changed_fields", "extra")


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
    return str(ULID.from_bytes(int(moment.timestamp() * 1000).to_bytes(6, "big") + bytes(10)))


def _has(connection: Connection, *tables: sa.Table) -> bool:
    inspector = sa.inspect(connection)
    return all(inspector.has_table(table.name) for table in tables)


def _entry_columns(sealed: bool, postgresql: bool) -> list[Any]:
    """Every column as close to its text as the database gives it: ids as bytes (PostgreSQL)
    or hex, JSON columns as text; on PostgreSQL the time as ISO 8601 UTC text too."""
    columns: list[Any] = []
    for name in _NAMES:
        column: Any = _log.c[name]
        if name in ("id", "transaction_id"):
            column = sa.func.uuid_send(column) if postgresql else sa.type_coerce(column, sa.String)
        elif name == "timestamp" and postgresql:
            utc = sa.func.timezone("UTC", column)
            column = sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
        elif name in _JSON:
            column = sa.cast(column, sa.Text) if postgresql else sa.type_coerce(column, sa.Text)
        columns.append(column.label(name))
    names = ("seal_seq", "entry_key", "digest", "erased")
    if sealed:
        columns += [_member.c[name] for name in names]
    else:
        columns += [sa.null().label(name) for name in names]
    return columns


def _entry_rows(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """SQLite and MariaDB rows as entry rows: ULIDs as text, times in ISO 8601 UTC."""
    out = []
    for row in rows:
        cells = list(row)
        cells[_ID] = ulid_text(bytes.fromhex(cells[_ID]))
        if cells[_TXN] is not None:
            cells[_TXN] = ulid_text(bytes.fromhex(cells[_TXN]))
        cells[_TIME] = _iso(cells[_TIME])
        out.append(tuple(cells))
    return out


def _prefetched(pages: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """``pages`` read by a thread of their own, one page ahead: the database runs the next query
    while this thread writes the current page (the reader waits on the socket, not on Python).
    Nothing else uses the connection meanwhile."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        ready.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the writing thread
            failed.append(exc)
        finally:
            stop.wait(0) or _put(ready, None, stop)

    reader = threading.Thread(target=read, name="auditlog-export", daemon=True)
    reader.start()
    try:
        while (page := ready.get()) is not None:
            yield page
    finally:
        stop.set()
        reader.join()
    if failed:
        raise failed[0]


def _put(ready: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


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


def _seal_records(connection: Connection, newest: int) -> Any:
    """Every seal up to ``newest``, with all its members and those gone by a recorded prune
    (listed by one, or older than a whole-log prune's cutoff)."""
    postgresql = connection.dialect.name == "postgresql"
    pruning = _has(connection, _prune, _pruned)
    joined = _member.outerjoin(_log, _log.c.id == _member.c.entry_id)
    gone: Any = _log.c.id.is_(None)
    if pruning:
        joined = joined.outerjoin(_pruned, _pruned.c.entry_id == _member.c.entry_id)
        listed: Any = _pruned.c.entry_id.is_not(None)
        cutoff_ms = _whole_log_cutoff(connection)
        if cutoff_ms >= 0:
            floor = ULID.from_bytes(cutoff_ms.to_bytes(6, "big") + bytes(10))
            listed = sa.or_(listed, _member.c.entry_id < str(floor))
        gone = sa.and_(gone, listed)
    else:
        gone = sa.and_(gone, sa.false())
    entry_id = (
        sa.func.uuid_send(_member.c.entry_id)
        if postgresql
        else sa.type_coerce(_member.c.entry_id, sa.String)
    )
    query = (
        sa.select(entry_id, _member.c.digest, sa.case((gone, 1), else_=0))
        .select_from(joined)
        .order_by(_member.c.entry_id)
    )
    seals = connection.execute(sa.select(_seal).where(_seal.c.seq <= newest).order_by("seq")).all()
    query = query.where(_member.c.seal_seq == sa.bindparam("seq", type_=sa.Integer))
    if postgresql:  # the driver's cursor, plain tuples, one seal ahead
        compiled = query.compile(connection)
        cursor = connection.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]

        params = _processed(compiled, compiled.construct_params({"seq": 0}))

        def members(seq: int) -> list[Any]:
            cursor.execute(str(compiled), {**params, "seq": seq})
            return list(cursor.fetchall())

    else:

        def members(seq: int) -> list[Any]:
            return list(connection.execute(query, {"seq": seq}).all())

    def records() -> Iterator[list[dict[str, Any]]]:
        for row in seals:
            listed, pruned = [], []
            for raw, digest, is_gone in members(row.seq):
                text = ulid_text(raw if postgresql else bytes.fromhex(raw))
                listed.append([text, digest])
                if is_gone:
                    pruned.append(text)
            yield [
                {
                    "seq": row.seq,
                    "sealed_at": _iso(row.sealed_at),
                    "entries": row.entries,
                    "entries_digest": row.entries_digest,
                    "previous": row.previous,
                    "digest": row.digest,
                    "members": listed,
                    "pruned": pruned,
                }
            ]

    for page in _prefetched(records()) if postgresql else records():
        yield from page


def _iso(moment: dt.datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


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
    if isinstance(bind, Engine):
        options: dict[str, Any] = {}
        if bind.dialect.name in ("postgresql", "mysql", "mariadb"):
            options["isolation_level"] = "REPEATABLE READ"  # one snapshot: entries match seals
        with bind.connect().execution_options(**options) as connection, connection.begin():
            return _export(connection, writer, moment, tenant_id, page_size, progress, format)
    return _export(bind, writer, moment, tenant_id, page_size, progress, format)


def _pages(
    connection: Connection,
    sealed: bool,
    source: Any,
    conditions: list[Any],
    page_size: int,
) -> Iterator[list[tuple[Any, ...]]]:
    """The selected entries in id order, as pages of entry rows: pages along the primary key,
    each query starting where the last one ended; on PostgreSQL, read by the driver itself
    (plain tuples), one page ahead."""
    postgresql = connection.dialect.name == "postgresql"
    query = sa.select(*_entry_columns(sealed, postgresql)).select_from(source).where(*conditions)
    query = query.order_by(_log.c.id).limit(page_size)
    if postgresql:
        pages = _prefetched(_driver_pages(connection, query, page_size))
    else:
        pages = _core_pages(connection, query, page_size)
    for rows in pages:  # PostgreSQL's ids stay bytes: the writer makes their text
        yield rows if postgresql else _entry_rows(rows)


def _core_pages(connection: Connection, query: sa.Select[Any], page_size: int) -> Iterator[list[Any]]:  # fmt: skip
    last: Any = None
    while True:
        rows = list(
            connection.execute(query if last is None else query.where(_log.c.id > last)).all()
        )
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        last = ulid_text(bytes.fromhex(rows[-1][_ID]))


def _driver_pages(connection: Connection, query: sa.Select[Any], page_size: int) -> Iterator[list[Any]]:  # fmt: skip
    """PostgreSQL: the page queries compiled once (the first page's, and the next pages' with
    ``id > %(after)s``), run on the driver's cursor."""
    first = query.compile(connection)
    after = sa.bindparam("after", type_=postgresql.UUID(as_uuid=False))
    following = query.where(_log.c.id > after).compile(connection)
    params = _processed(first, first.construct_params())
    cursor = connection.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]
    cursor.execute(str(first), params)
    while True:
        rows = list(cursor.fetchall())
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        cursor.execute(str(following), {**params, "after": rows[-1][_ID].hex()})


def _processed(compiled: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Bound values as the driver takes them (the column types' bind processing applied)."""
    processors = compiled._bind_processors
    return {k: processors[k](v) if k in processors else v for k, v in params.items()}


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
            "exported_at": _iso(dt.datetime.now(dt.timezone.utc)),
            "dialect": connection.dialect.name,
            "before": _iso(moment),
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
    for rows in _pages(connection, sealed, source, conditions, page_size):
        writer.entries(rows, ids_as_bytes=postgresql)
        seals = [int(row[_SEAL]) for row in rows if row[_SEAL] is not None]
        in_seals += len(seals)
        newest = max(newest, *seals) if seals else newest
        done += len(rows)
        if progress is not None:
            progress(done)
    seal_count = 0
    if sealed and newest:
        for record in _seal_records(connection, newest):
            writer.record("seal", record)
            seal_count += 1
    writer.close()
    return ExportResult(form, moment, done, in_seals, seal_count)


# Reading an archive back: verifying it, importing it.


def _entry_values(record: dict[str, Any]) -> dict[str, Any]:
    """An entry record's values as a database read gives them (what the digests cover)."""
    values = {name: record.get(name) for name in _NAMES}
    values["timestamp"] = dt.datetime.fromisoformat(record["timestamp"])
    return values


class _Archive:
    """One pass over an archive: the header, the entries (as records) and the seals; the trailer
    checked at the end, into ``problems``."""

    def __init__(self, path: str | Path) -> None:
        self.reader = ArchiveReader(path)
        self.header: dict[str, Any] = {}
        self.before_ms = 0

    def records(self) -> Any:
        records = iter(self.reader)
        first = next(records, None)
        if first is None or first["record"] != "header" or first.get("format") != NAME:
            raise ArchiveError(f"{str(self.reader.path)!r} does not start with an archive header")
        if first.get("version") != VERSION:
            raise ArchiveError(
                f"{str(self.reader.path)!r} is an archive of version {first.get('version')}; "
                f"this auditlog reads version {VERSION}"
            )
        self.header = first
        before = dt.datetime.fromisoformat(first["before"])
        self.before_ms = int(before.timestamp() * 1000)
        yield from records

    def outside(self, entry_id: str) -> bool:
        """Whether a seal member lies outside the archive's selection (newer, another tenant's)."""
        if self.header.get("tenant_id") is not None:
            return True  # the seal keeps no tenant: any member may be another tenant's
        millis: int = ULID.from_str(entry_id).milliseconds
        return millis >= self.before_ms

    def trailer_problems(self) -> list[Problem]:
        from ..integrity.verify import Problem

        trailer, computed = self.reader.trailer, self.reader.computed
        name = str(self.reader.path)
        if trailer is None or computed is None:
            return [Problem("archive_truncated", f"{name} has no trailer: it was cut short")]
        digest, count = computed
        if trailer.get("records") != count:
            return [
                Problem(
                    "archive_changed",
                    f"{name} holds {count} records, its trailer counts {trailer.get('records')}",
                )
            ]
        if trailer.get("sha256") != digest:
            return [Problem("archive_changed", f"{name} is not as written (its digest differs)")]
        return []


class _Member:
    """A seal member as ``verify`` checks it, from an archived entry."""

    __slots__ = ("digest", "entry_id", "entry_key", "erased", "seal_seq")

    def __init__(self, record: dict[str, Any]) -> None:
        self.entry_id, self.seal_seq = record["id"], record["seal"]
        self.entry_key, self.digest, self.erased = (
            record["entry_key"],
            record["digest"],
            record["erased"],
        )


def verify_archive(path: str | Path, *, head: str | None = None) -> VerifyReport:
    """Recompute, from the archive file alone, each archived sealed entry's digest, each seal's
    digest, entries and link to the previous one, that every member of a seal is in the archive,
    outside its selection or pruned, the trailer, and the published ``head`` when its seal is
    in the archive. See docs/archives.md."""
    from ..integrity.verify import parse_head

    published = parse_head(head) if head is not None else None
    try:
        return _verify_archive(path, published)
    except ArchiveError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ArchiveError(
            f"{str(path)!r} holds a record no archive has ({type(exc).__name__}: {exc})"
        ) from None


def _verify_archive(path: str | Path, published: tuple[int, str] | None) -> VerifyReport:
    from ..integrity.verify import LATE, Problem, VerifyReport, _check_entry

    archive = _Archive(path)
    report = VerifyReport()
    problems = report.problems
    claimed: dict[int, list[Any]] = {}  # seal -> [count, sha256 of (id, digest) in id order]
    unsealed: list[tuple[str, dt.datetime]] = []
    expected_seq, previous, newest = 1, GENESIS, None
    deferred: dict[int, dict[str, Any]] = {}
    for record in archive.records():
        kind = record["record"]
        if kind == "entry":
            values = _entry_values(record)
            if record.get("seal") is None:
                unsealed.append((record["id"], values["timestamp"]))
                continue
            member = _Member(record)
            _check_entry(member, values, member.seal_seq, None, report)
            held = claimed.setdefault(member.seal_seq, [0, hashlib.sha256()])
            held[0] += 1
            held[1].update(f"{member.entry_id}:{member.digest}\n".encode())
        elif kind == "seal":
            seq = record["seq"]
            while expected_seq < seq:
                problems.append(
                    Problem(
                        "seal_removed",
                        f"seal {expected_seq} is missing from the archive",
                        seal=expected_seq,
                    )
                )
                expected_seq, previous = expected_seq + 1, ""
            if previous and record["previous"] != previous:
                problems.append(
                    Problem(
                        "chain_broken",
                        f"seal {seq} does not follow seal {seq - 1} (its previous digest differs)",
                        seal=seq,
                    )
                )
            sealed_at = dt.datetime.fromisoformat(record["sealed_at"])
            if (
                seal_digest(
                    seq, sealed_at, record["entries"], record["entries_digest"], record["previous"]
                )
                != record["digest"]
            ):
                problems.append(Problem("seal_changed", f"seal {seq} was changed", seal=seq))
            members = record["members"]
            if (
                len(members) != record["entries"]
                or entries_digest(d for _, d in members) != record["entries_digest"]
            ):
                problems.append(
                    Problem(
                        "seal_entries_changed",
                        f"seal {seq} lists {len(members)} members whose digests are not the {record['entries']} it sealed",
                        seal=seq,
                    )
                )
            pruned = set(record["pruned"])
            report.pruned += len(pruned)
            report.sealed += len(members)
            expected = hashlib.sha256()
            count = 0
            for entry_id, digest in members:
                if entry_id not in pruned and not archive.outside(entry_id):
                    expected.update(f"{entry_id}:{digest}\n".encode())
                    count += 1
            held = claimed.pop(seq, [0, hashlib.sha256()])
            if (
                archive.header.get("tenant_id") is not None
                or held[0] != count
                or held[1].digest() != expected.digest()
            ):
                deferred[seq] = {"members": members, "pruned": pruned}
            expected_seq, previous, newest = seq + 1, record["digest"], record
            if published is not None and published[0] == seq and published[1] != record["digest"]:
                problems.append(
                    Problem(
                        "head_mismatch",
                        f"seal {seq} is not the published head: the log was rewritten",
                        seal=seq,
                    )
                )
    problems.extend(archive.trailer_problems())
    for seq in sorted(claimed):
        problems.append(
            Problem(
                "seal_removed",
                f"seal {seq} holds archived entries but is missing from the archive",
                seal=seq,
            )
        )
    if deferred:
        _compare_members(archive, deferred, problems)
    report.seals = expected_seq - 1 if newest is not None else 0
    if newest is not None:
        report.head = f"{newest['seq']}:{newest['digest']}"
        horizon = dt.datetime.fromisoformat(newest["sealed_at"]) - LATE
    for entry_id, moment in unsealed:
        report.unsealed.append(entry_id)
        if newest is not None and moment < horizon:
            problems.append(
                Problem(
                    "entry_inserted",
                    f"entry {entry_id} is in no seal but dates from {moment.isoformat()}, before the newest seal by more than {LATE}",
                    entry_id=entry_id,
                )
            )
    return report


def _compare_members(
    archive: _Archive, deferred: dict[int, dict[str, Any]], problems: list[Problem]
) -> None:
    """Name the entries of the seals whose archived members are not their members: a second
    pass, keeping only those seals' archived entries."""
    from ..integrity.verify import Problem

    found: dict[int, dict[str, str]] = {seq: {} for seq in deferred}
    for record in archive.records():
        if record["record"] == "entry" and record.get("seal") in found:
            found[record["seal"]][record["id"]] = record["digest"]
    for seq, seal in deferred.items():
        archived = found[seq]
        for entry_id, digest in seal["members"]:
            held = archived.pop(entry_id, None)
            if held is None:
                if entry_id not in seal["pruned"] and not archive.outside(entry_id):
                    problems.append(
                        Problem(
                            "entry_removed",
                            f"entry {entry_id} of seal {seq} is missing from the archive",
                            entry_id=entry_id,
                            seal=seq,
                        )
                    )
            elif held != digest:
                problems.append(
                    Problem(
                        "entry_changed",
                        f"entry {entry_id} of seal {seq} is not as sealed (its digest differs)",
                        entry_id=entry_id,
                        seal=seq,
                    )
                )
        for entry_id in archived:
            problems.append(
                Problem(
                    "seal_entries_changed",
                    f"entry {entry_id} claims seal {seq}, which does not hold it",
                    entry_id=entry_id,
                    seal=seq,
                )
            )


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
    try:
        archive = _Archive(path)
        for record in archive.records():
            if record["record"] == "seal":
                seals[record["seq"]] = record["digest"]
    except ArchiveError as exc:
        raise ArchiveError(f"refused, nothing imported: {exc}") from None
    damaged = archive.trailer_problems()
    if damaged:
        raise ArchiveError(f"refused, nothing imported: {damaged[0].detail}")
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return _import(connection, archive, seals, batch_size)
    return _import(bind, archive, seals, batch_size)


def _import(
    connection: Connection, archive: _Archive, seals: dict[int, str], batch_size: int
) -> ImportResult:
    from ..integrity.guard import maintenance
    from ..models import create_tables

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
        self, connection: Connection, archive: _Archive, new_seals: set[int], batch_size: int
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
        rows = [_entry_values(r) for r in batch if r["id"] not in there]
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
        for r in batch:  # a member recorded without its key by an earlier import: its key now
            if r["id"] in members and members[r["id"]] is None and r.get("entry_key") is not None:
                self.connection.execute(
                    sa.update(_member)
                    .where(_member.c.entry_id == r["id"], _member.c.erased.is_(None))
                    .values(entry_key=r["entry_key"])
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
            (entry_id, digest) for entry_id, digest in record["members"] if entry_id not in held
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
