"""Verifying an archive from the file alone: what ``auditlog.verify`` recomputes from the
database, recomputed from the archived records."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ulid import ULID

from ...integrity.digest import (
    FIELDS,
    GENESIS,
    digest_bytes,
    entries_digest,
    entries_hash,
    entry_cells,
    seal_version,
)
from .reader import ArchiveReader
from .records import NAME, READS, ArchiveError

if TYPE_CHECKING:
    from ...integrity.verify import Problem, VerifyReport

__all__ = ["ArchiveFile", "entry_values", "verify_archive"]


def entry_values(record: dict[str, Any]) -> dict[str, Any]:
    """An entry record's values as a database read gives them (what the digests cover)."""
    values = {name: record.get(name) for name in FIELDS}
    values["timestamp"] = dt.datetime.fromisoformat(record["timestamp"])
    return values


class ArchiveFile:
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
        if first.get("version") not in READS:
            raise ArchiveError(
                f"{str(self.reader.path)!r} is an archive of version {first.get('version')}; "
                f"this auditlog reads versions {', '.join(map(str, READS))}"
            )
        self.header = first
        try:
            before = dt.datetime.fromisoformat(first["before"])
            if before.tzinfo is None:
                raise ValueError("no UTC offset")
            self.before_ms = int(before.timestamp() * 1000)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ArchiveError(
                f"{str(self.reader.path)!r}: the header's before is not a time ({exc})"
            ) from None
        yield from records

    def outside(self, entry_id: str) -> bool:
        """Whether a seal member lies outside the archive's selection (newer, another tenant's)."""
        if self.header.get("tenant_id") is not None:
            return True  # the seal keeps no tenant: any member may be another tenant's
        millis: int = ULID.from_str(entry_id).milliseconds
        return millis >= self.before_ms

    def stray(self, record: dict[str, Any]) -> str | None:
        """Why an entry record lies outside the archive's selection (its header's ``before``
        and ``tenant_id``), or None."""
        entry_id, tenant = record["id"], self.header.get("tenant_id")
        if ULID.from_str(entry_id).milliseconds >= self.before_ms:
            return (
                f"entry {entry_id} is not older than the archive's before ({self.header['before']})"
            )
        if tenant is not None and record.get("tenant_id") != tenant:
            return f"entry {entry_id} is not of the archive's tenant {tenant!r}"
        return None

    def trailer_problems(self) -> list[Problem]:
        from ...integrity.verify import Problem

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


def verify_archive(
    path: str | Path, *, head: str | None = None, late: dt.timedelta | None = None
) -> VerifyReport:
    """Recompute, from the archive file alone, each archived sealed entry's digest, each seal's
    digest, entries and link to the previous one, that every member of a seal is in the archive,
    outside its selection or pruned, the trailer, and the published ``head`` when its seal is
    in the archive; ``late`` as for ``verify`` (an hour by default). See docs/archives.md."""
    from ...integrity.verify import LATE, parse_head

    published = parse_head(head) if head is not None else None
    try:
        return _verify_archive(path, published, LATE if late is None else late)
    except ArchiveError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ArchiveError(
            f"{str(path)!r} holds a record no archive has ({type(exc).__name__}: {exc})"
        ) from None


def _verify_archive(
    path: str | Path, published: tuple[int, str] | None, late: dt.timedelta
) -> VerifyReport:
    from ...integrity.verify import Problem, VerifyReport, _check_entry, missing_seals

    archive = ArchiveFile(path)
    report = VerifyReport()
    problems = report.problems
    # seal -> [count, sha256 of (id, digest) in id order, the digests as a seal's entries digest]
    claimed: dict[int, list[Any]] = {}
    unsealed: list[tuple[str, dt.datetime]] = []
    expected_seq, previous, newest = 1, GENESIS, None
    deferred: dict[int, dict[str, Any]] = {}
    last_id, seals = "", 0
    for record in archive.records():
        kind = record["record"]
        if kind == "entry":
            if record["id"] <= last_id:  # entries run in id order, each once
                problems.append(
                    Problem(
                        "archive_changed",
                        f"entry {record['id']} follows entry {last_id}: archived entries run "
                        "in id order, each once (a record was repeated, forged or moved)",
                        entry_id=record["id"],
                    )
                )
                continue
            last_id = record["id"]
            stray = archive.stray(record)
            if stray:
                problems.append(Problem("archive_changed", stray, entry_id=record["id"]))
            values = entry_values(record)
            if record.get("seal") is None:
                unsealed.append((record["id"], values["timestamp"]))
                continue
            member = _Member(record)
            _check_entry(member, entry_cells(values), member.seal_seq, None, report)
            held = claimed.get(member.seal_seq)
            if held is None:
                held = claimed[member.seal_seq] = [0, hashlib.sha256(), entries_hash()]
            held[0] += 1
            held[1].update(f"{member.entry_id}:{member.digest}\n".encode())
            held[2].update(digest_bytes(member.digest))
        elif kind == "seal":
            seq = record["seq"]
            if not isinstance(seq, int):
                raise ArchiveError(f"{str(path)!r} holds a seal numbered {seq!r}")
            if seq < expected_seq:  # seals run in number order, each once
                problems.append(
                    Problem(
                        "archive_changed",
                        f"seal {seq} follows seal {expected_seq - 1}: archived seals run in "
                        "number order, each once (a record was repeated, forged or moved)",
                        seal=seq,
                    )
                )
                continue
            seals += 1
            if expected_seq < seq:
                gap = missing_seals(expected_seq, seq)
                problems.append(replace(gap, detail=f"{gap.detail} from the archive"))
                previous = ""
            if previous and record["previous"] != previous:
                problems.append(
                    Problem(
                        "chain_broken",
                        f"seal {seq} does not follow seal {seq - 1} (its previous digest differs)",
                        seal=seq,
                    )
                )
            sealed_at = dt.datetime.fromisoformat(record["sealed_at"])
            version = seal_version(
                seq,
                sealed_at,
                record["entries"],
                record["entries_digest"],
                record["previous"],
                record["digest"],
            )
            if version is None:
                problems.append(Problem("seal_changed", f"seal {seq} was changed", seal=seq))
            members = record["members"]
            if members is None:  # every member is an archived entry (version 2)
                _check_archived(record, claimed.pop(seq, None), report)
                expected_seq, previous, newest = seq + 1, record["digest"], record
                _check_head(record, published, problems)
                continue
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
            held = claimed.pop(seq, None) or [0, hashlib.sha256()]
            if (
                archive.header.get("tenant_id") is not None
                or held[0] != count
                or held[1].digest() != expected.digest()
            ):
                deferred[seq] = {"members": members, "pruned": pruned}
            expected_seq, previous, newest = seq + 1, record["digest"], record
            _check_head(record, published, problems)
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
    report.seals = seals
    if newest is not None:
        report.head = f"{newest['seq']}:{newest['digest']}"
        try:
            horizon = dt.datetime.fromisoformat(newest["sealed_at"]) - late
        except OverflowError:  # later than anything: no entry is late
            horizon = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    for entry_id, moment in unsealed:
        report.unsealed.append(entry_id)
        if newest is not None and moment < horizon:
            problems.append(
                Problem(
                    "entry_inserted",
                    f"entry {entry_id} is in no seal but dates from {moment.isoformat()}, before the newest seal by more than {late}",
                    entry_id=entry_id,
                )
            )
    return report


def _check_archived(record: dict[str, Any], held: list[Any] | None, report: VerifyReport) -> None:
    """A seal whose members the archive leaves out (all archived entries): they must be as many
    as it sealed and give its entries digest, in id order."""
    from ...integrity.verify import Problem

    seq, count = record["seq"], record["entries"]
    archived, digest = (held[0], held[2].hexdigest()) if held else (0, entries_digest(()))
    report.sealed += count
    if archived < count:  # the file lost entry records: no member list names them
        report.problems.append(
            Problem(
                "entry_removed",
                f"{count - archived} of the {count} entries of seal {seq} are missing from the "
                "archive (the seal was exported with all its entries)",
                seal=seq,
            )
        )
    elif archived > count or digest != record["entries_digest"]:
        report.problems.append(
            Problem(
                "seal_entries_changed",
                f"the {archived} archived entries of seal {seq} are not the {count} it sealed "
                "(their digests differ)",
                seal=seq,
            )
        )


def _check_head(
    record: dict[str, Any], published: tuple[int, str] | None, problems: list[Problem]
) -> None:
    from ...integrity.verify import Problem

    seq = record["seq"]
    if published is not None and published[0] == seq and published[1] != record["digest"]:
        problems.append(
            Problem(
                "head_mismatch",
                f"seal {seq} is not the published head: the log was rewritten",
                seal=seq,
            )
        )


def _compare_members(
    archive: ArchiveFile, deferred: dict[int, dict[str, Any]], problems: list[Problem]
) -> None:
    """Name the entries of the seals whose archived members are not their members: a second
    pass, keeping only those seals' archived entries."""
    from ...integrity.verify import Problem

    found: dict[int, dict[str, str]] = {seq: {} for seq in deferred}
    last_id = ""
    for record in archive.records():
        if record["record"] != "entry" or record["id"] <= last_id:  # as the first pass
            continue
        last_id = record["id"]
        if record.get("seal") in found:
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
