"""Verifying: recompute every digest and name every problem, with the entry and seal at fault.

What is checked, seal by seal in number order:

- the chain: numbers run 1, 2, 3... (a gap is a removed seal), each seal's ``previous`` is the
  digest of the one before, and each seal's own digest is recomputed from its fields;
- its entries: each member's entry is still there (else it was removed) and hashes to the digest
  sealed for it (else it was changed, in any column); the members' digests, in id order, give
  the seal's ``entries_digest`` and number its ``entries`` (else entries were added to the seal,
  taken out of it, moved between seals or reordered);
- the published head, when given: its seal is still there with the same digest (else the log
  was truncated, or rewritten as a whole, seals included);
- pruned entries: a sealed entry that is gone because a prune removed it (older than a whole-log
  prune's ``pruned_before``, or listed by a tenant's prune in ``audit_prune_entry``) is counted
  in ``pruned``, not reported as removed (docs/lifecycle.md);
- entries in no seal: listed as not sealed yet. One older than the newest seal by more than
  ``late`` (no transaction runs that long) was inserted among sealed entries.

With ``tenant_id``, only that tenant's entries are recomputed; the other entries count by their
sealed digests, so a tenant proves its own entries without reading anyone else's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from ulid import ULID

from ..lifecycle.tables import prune_entry_table as _pruned
from ..lifecycle.tables import prune_table as _prune
from ..models import audit_log_table as _log
from ..ulids import ulid_text
from .digest import (
    GENESIS,
    Cells,
    cell,
    digest_bytes,
    entries_digest,
    entries_hash,
    erasure_record,
    from_hex,
    seal_version,
    sealed_version,
)
from .rows import cell_columns, read_cells
from .seal import LATE, format_head
from .tables import seal_entry_table as _member
from .tables import seal_table as _seal

__all__ = ["LATE", "Problem", "ProblemKind", "VerifyReport", "parse_head", "verify"]

ProblemKind = Literal[
    "entry_changed",
    "entry_removed",
    "entry_inserted",
    "seal_entries_changed",
    "seal_changed",
    "seal_removed",
    "chain_broken",
    "head_missing",
    "head_mismatch",
    "archive_truncated",
    "archive_changed",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that is not as sealed."""

    kind: ProblemKind
    detail: str
    entry_id: str | None = None
    seal: int | None = None


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` found. ``intact`` when there is no problem."""

    problems: list[Problem] = field(default_factory=list)
    seals: int = 0
    sealed: int = 0
    #: ids of entries in no seal yet (not problems, unless also in ``problems``)
    unsealed: list[str] = field(default_factory=list)
    #: (entry id, fields) of sealed entries whose fields were erased (not problems)
    erased: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    #: sealed entries removed by a prune (not problems)
    pruned: int = 0
    #: ``"<seq>:<digest>"`` of the newest seal
    head: str | None = None

    @property
    def intact(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "intact": self.intact,
            "head": self.head,
            "seals": self.seals,
            "sealed": self.sealed,
            "unsealed": list(self.unsealed),
            "pruned": self.pruned,
            "erased": [{"entry_id": e, "fields": list(f)} for e, f in self.erased],
            "problems": [
                {"kind": p.kind, "detail": p.detail, "entry_id": p.entry_id, "seal": p.seal}
                for p in self.problems
            ],
        }


def parse_head(head: str) -> tuple[int, str]:
    """``"<seq>:<digest>"`` as (seq, digest); a ValueError naming what is wrong otherwise."""
    seq_text, sep, digest = head.strip().partition(":")
    digest = digest.lower()
    if (
        not sep
        or not seq_text.isdecimal()
        or int(seq_text) < 1
        or len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise ValueError(
            f"{head!r} is not a published head ('<seal number>:<64 hex digits>', as "
            "auditlog seal prints it)"
        )
    return int(seq_text), digest


def verify(
    bind: Engine | Connection,
    *,
    head: str | None = None,
    tenant_id: str | None = None,
    late: dt.timedelta = LATE,
) -> VerifyReport:
    """Recompute every seal and sealed entry; see the module's documentation for the checks."""
    try:
        published = parse_head(head) if head is not None else None
    except ValueError as exc:
        raise ValueError(f"verify(): head: {exc}") from None
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return _verify(connection, published, tenant_id, late)
    return _verify(bind, published, tenant_id, late)


def _verify(
    connection: Connection,
    published: tuple[int, str] | None,
    tenant_id: str | None,
    late: dt.timedelta,
) -> VerifyReport:
    report = VerifyReport()
    problems = report.problems
    if not _has_seal_tables(connection):  # never sealed here (or the seal tables were dropped)
        if published is not None:
            _check_head(published, {}, problems)
        report.unsealed = [entry_id for entry_id, _ in _unsealed(connection, tenant_id, False)]
        return report
    seals = {row.seq: row for row in connection.execute(sa.select(_seal).order_by(_seal.c.seq))}
    held: dict[int, tuple[int, str]] = {}  # seal -> (members, digest of their digests)
    versions = {  # how each seal's entries were digested (None: the seal was changed)
        seq: seal_version(seq, r.sealed_at, r.entries, r.entries_digest, r.previous, r.digest)
        for seq, r in seals.items()
    }
    pruning = _Pruning(connection)
    for seq, members in groupby(_members(connection, pruning), key=lambda pair: pair[0].seal_seq):
        count, hashed = 0, entries_hash()
        for member, entry in members:
            count += 1
            hashed.update(digest_bytes(member.digest))
            if entry is None and pruning.covers(member):
                report.pruned += 1
                continue
            _check_entry(member, entry, seq, tenant_id, report, versions.get(seq))
        report.sealed += count
        held[seq] = (count, hashed.hexdigest())
    expected_seq, previous = 1, GENESIS
    newest: Any = None
    for seq in sorted(seals):
        row = seals[seq]
        if expected_seq < seq:
            problems.append(missing_seals(expected_seq, seq))
            for gone in [s for s in held if s < seq]:
                del held[gone]  # their members, if left, were checked above
            previous = ""  # unknown: the next seal's link cannot be checked against it
        if previous and row.previous != previous:
            problems.append(
                Problem(
                    "chain_broken",
                    f"seal {seq} does not follow seal {seq - 1} (its previous digest differs)",
                    seal=seq,
                )
            )
        if versions[seq] is None:
            problems.append(Problem("seal_changed", f"seal {seq} was changed", seal=seq))
        count, digest = held.pop(seq, (0, entries_digest(())))
        if count != row.entries or digest != row.entries_digest:
            problems.append(
                Problem(
                    "seal_entries_changed",
                    f"seal {seq} holds {count} entries whose digests are not the "
                    f"{row.entries} it sealed (entries added, taken out, moved or changed "
                    "with their digest)",
                    seal=seq,
                )
            )
        expected_seq, previous, newest = seq + 1, row.digest, row
    for seq in sorted(held):  # members of a seal after the newest one left
        problems.append(Problem("seal_removed", f"seal {seq} is missing", seal=seq))
    report.seals = len(seals)
    if newest is not None:
        report.head = format_head(newest.seq, newest.digest)
    if published is not None:
        _check_head(published, seals, problems)
    horizon = None
    if newest is not None and late < _utc(newest.sealed_at) - _EARLIEST:
        horizon = _utc(newest.sealed_at) - late  # (a longer late: no entry is late)
    for entry_id, timestamp in _unsealed(connection, tenant_id):
        report.unsealed.append(entry_id)
        if horizon is not None and timestamp is not None and _utc(timestamp) < horizon:
            problems.append(
                Problem(
                    "entry_inserted",
                    f"entry {entry_id} is in no seal but dates from {_utc(timestamp).isoformat()}"
                    f", before the newest seal by more than {late}",
                    entry_id=entry_id,
                )
            )
    return report


def _check_entry(
    member: Any,
    entry: Cells | None,
    seq: int,
    tenant_id: str | None,
    report: VerifyReport,
    version: int | None = None,
) -> None:
    """Check one member's entry against its sealed digest, under its seal's ``version`` first
    (when known), then the others: the digest is fixed by the seal's entries digest and the
    chain, so a match under any version proves the entry."""
    problems = report.problems
    if entry is None:
        if tenant_id is None:
            problems.append(
                Problem(
                    "entry_removed",
                    f"entry {member.entry_id} of seal {seq} is gone",
                    entry_id=member.entry_id,
                    seal=seq,
                )
            )
        return
    if tenant_id is not None and cell(entry, "tenant_id") != tenant_id.encode():
        return  # another tenant's: counted by its sealed digest
    key = from_hex(member.entry_key, 16)
    erasure = erasure_record(member.erased) if member.entry_key is None else None
    sealed = from_hex(member.digest, 32)
    if key is not None:
        intact = sealed_version(entry, sealed, key=key, first=version) is not None
    elif erasure is not None:  # erased in part: kept field keys and erased field digests
        erased = erasure[1]
        if erased:
            report.erased.append((member.entry_id, tuple(sorted(erased))))
        intact = sealed_version(entry, sealed, erasure=erasure, first=version) is not None
        intact = intact and all(cell(entry, name) in (None, b"") for name in erased)
    else:  # its key, or what an erasure kept, was edited: nothing proves the entry now
        problems.append(
            Problem(
                "entry_changed",
                f"entry {member.entry_id} of seal {seq} cannot be checked: its seal's record "
                "of it was changed (key or erasure record not as written)",
                entry_id=member.entry_id,
                seal=seq,
            )
        )
        return
    if not intact:
        problems.append(
            Problem(
                "entry_changed",
                f"entry {member.entry_id} of seal {seq} is not as sealed",
                entry_id=member.entry_id,
                seal=seq,
            )
        )


def missing_seals(first: int, following: int) -> Problem:
    """One problem for the seals numbered ``first`` up to ``following`` (not included), which
    are gone: a gap is reported once, whatever its size."""
    if following - first == 1:
        return Problem("seal_removed", f"seal {first} is missing", seal=first)
    return Problem(
        "seal_removed",
        f"seals {first} to {following - 1} are missing ({following - first} seals)",
        seal=first,
    )


class _Pruning:
    """What the prunes removed: every entry older than the newest whole-log prune's cutoff, and
    the entries listed by the others."""

    def __init__(self, connection: Connection) -> None:
        inspector = sa.inspect(connection)
        self.recorded = inspector.has_table(_prune.name) and inspector.has_table(_pruned.name)
        self.cutoff_ms = -1
        if self.recorded:
            cutoff = connection.execute(
                sa.select(sa.func.max(_prune.c.pruned_before)).where(
                    _prune.c.kind == "prune", _prune.c.tenant_id.is_(None)
                )
            ).scalar_one()
            if cutoff is not None:
                self.cutoff_ms = int(_utc(cutoff).timestamp() * 1000)

    def covers(self, member: _Member) -> bool:
        if member.pruned:
            return True
        try:
            millis: int = ULID.from_str(member.entry_id).milliseconds
            return millis < self.cutoff_ms
        except ValueError:  # not a ULID: written by something else
            return False


def _members(connection: Connection, pruning: _Pruning) -> Iterator[tuple[_Member, Cells | None]]:
    """Every member by seal and id, with its entry's cells (None when it is gone), streamed."""
    joined = _member.outerjoin(_log, _log.c.id == _member.c.entry_id)
    pruned: Any = sa.null()
    if pruning.recorded:
        joined = joined.outerjoin(_pruned, _pruned.c.entry_id == _member.c.entry_id)
        pruned = _pruned.c.prune_id
    query = (
        sa.select(
            *cell_columns(connection),
            *(_member.c[name] for name in _MEMBER_COLUMNS),
            pruned.label("pruned_by"),
        )
        .select_from(joined)
        .order_by(_member.c.seal_seq, _member.c.entry_id)
    )
    for cells, rest in read_cells(connection, query, stream=True):
        yield _Member(*rest), cells


_MEMBER_COLUMNS = ("seal_seq", "entry_id", "entry_key", "digest", "erased")


class _Member:
    """A seal's record of one entry (its id made text only when asked for: rarely)."""

    __slots__ = ("_id", "digest", "entry_key", "erased", "pruned", "seal_seq")

    def __init__(
        self,
        seal_seq: int,
        entry_id: Any,
        entry_key: str | None,
        digest: str,
        erased: str | None,
        pruned_by: Any = None,
    ) -> None:
        self.seal_seq, self._id = seal_seq, entry_id
        self.entry_key, self.digest, self.erased = entry_key, digest, erased
        self.pruned = pruned_by is not None

    @property
    def entry_id(self) -> str:
        return _ulid_text(self._id)


def _ulid_text(value: Any) -> str:
    """A member's entry id as its ULID text, as read by the driver (uuid text) or typed."""
    if isinstance(value, str) and len(value) == 26:
        return value
    if isinstance(value, uuid.UUID):
        return ulid_text(value.bytes)
    text = str(value).replace("-", "")
    try:
        return str(ULID.from_hex(text))
    except ValueError:  # not a ULID: written by something else
        return str(value)


def _has_seal_tables(connection: Connection) -> bool:
    inspector = sa.inspect(connection)
    return inspector.has_table(_seal.name) and inspector.has_table(_member.name)


def _unsealed(
    connection: Connection, tenant_id: str | None, sealed: bool = True
) -> Iterator[tuple[str, Any]]:
    query = sa.select(_log.c.id, _log.c.timestamp).order_by(_log.c.id)
    if sealed:
        query = query.select_from(_log.outerjoin(_member, _member.c.entry_id == _log.c.id)).where(
            _member.c.entry_id.is_(None)
        )
    if tenant_id is not None:
        query = query.where(_log.c.tenant_id == tenant_id)
    for row in connection.execute(query):
        yield row.id, row.timestamp


def _check_head(published: tuple[int, str], seals: dict[int, Any], problems: list[Problem]) -> None:
    seq, digest = published
    row = seals.get(seq)
    if row is None:
        problems.append(
            Problem(
                "head_missing",
                f"the published head's seal {seq} is gone: the log was truncated",
                seal=seq,
            )
        )
    elif row.digest != digest:
        problems.append(
            Problem(
                "head_mismatch",
                f"seal {seq} is not the published head: the log was rewritten",
                seal=seq,
            )
        )


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)
