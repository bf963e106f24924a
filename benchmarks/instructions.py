"""CPU instructions per row or per request on SQLite, plain and audited, under callgrind.

Run from the repository root (valgrind must be installed)::

    python -m benchmarks.instructions [--tree PATH ...] [--rows 2000] [--batch 500]
    python -m benchmarks.instructions --workload request --naive [--tree PATH ...] [--rows 300]

``--workload write`` (the default) is the write workload, per row. ``--workload request`` is the
request workload, per transaction: one-object creates, updates and deletes, each in its own
``audit_context`` and session, after a warm-up of every phase; ``--naive`` adds the naive
listener beside plain.

Wall time on a shared, noisy machine moves by several percent between runs; instructions counted
by ``valgrind --tool=callgrind`` repeat to a fraction of a percent, so a small change to the
capture path shows up. They are not time (cache misses, syscalls and SQLite's I/O wait are not
weighed), only the work the CPU is asked to do.

Each figure is a difference of two child processes: one stopped after a phase minus one stopped
before it (``--stop-after setup|insert|update|delete``), so interpreter start-up, imports and
table creation cancel out; a run's count is the "totals:"/"summary:" line of its callgrind file.
Each run gets a fresh SQLite file in a temporary directory, ``PYTHONHASHSEED=0`` and
``PYTHONPATH=<tree>/src``, so ``import auditlog`` comes from the tree measured (``--tree`` may
repeat; default: this checkout). ``plain`` never imports auditlog: it is measured once, with the
first tree. The JSON encoder is the tree's choice: orjson where the environment has it.

``workloads.write`` runs its three phases in one go and cannot stop between them, so the child's
phase loops below mirror it exactly (same statements, same batching, one ``audit_context`` around
all phases), without its ``time.perf_counter()`` calls and without the final entry count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import backends
from .variants import Setup, item_values, set_up

PHASES = ("insert", "update", "delete")
STOPS = ("setup", *PHASES)
REQUEST_PHASES = ("create", "update", "delete")
REQUEST_STOPS = ("setup", *REQUEST_PHASES)
VARIANTS = ("plain", "naive", "auditlog")
ROOT = Path(__file__).resolve().parent.parent
_NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


# --- the child: the write workload, stopped after a phase ---------------------------------------


def _insert(setup: Setup, rows: int, batch: int) -> None:
    model, sessions = setup.model, setup.sessions
    for first in range(0, rows, batch):
        with sessions() as session:
            session.add_all(
                [model(**item_values(i)) for i in range(first, min(first + batch, rows))]
            )
            session.commit()


def _update(setup: Setup, rows: int, batch: int) -> None:
    model, sessions = setup.model, setup.sessions
    last = 0
    while True:
        with sessions() as session:
            items = session.scalars(
                sa.select(model).where(model.id > last).order_by(model.id).limit(batch)
            ).all()
            if not items:
                break
            for item in items:
                item.price = item.price + Decimal("1.25")
                item.updated_at = _NOW
            last = items[-1].id
            session.commit()


def _delete(setup: Setup, rows: int, batch: int) -> None:
    model, sessions = setup.model, setup.sessions
    while True:
        with sessions() as session:
            items = session.scalars(sa.select(model).order_by(model.id).limit(batch)).all()
            if not items:
                break
            for item in items:
                session.delete(item)
            session.commit()


# --- the child: one-object transactions, as web requests make them -----------------------------

#: Transactions per phase that run before the measured ones, so that compiled statements, the
#: content type id and every cache are warm, as in a process that has served requests before.
WARM_UP = 20


def _one_object_phases(setup: Setup, first: int, count: int, stop_after: str) -> None:
    """``count`` creates, then updates, then deletes of one object each, as ``workloads.request``.

    Objects get keys ``first + 1 ...`` so that the warm-up and the measured runs never meet.
    """
    model, sessions, context = setup.model, setup.sessions, setup.context

    def create(session: Session, key: int) -> None:
        session.add(model(**{**item_values(key), "id": key}))

    def update(session: Session, key: int) -> None:
        item = session.get(model, key)
        item.price = item.price + Decimal("1.25")
        item.updated_at = _NOW

    def delete(session: Session, key: int) -> None:
        session.delete(session.get(model, key))

    bodies = {"create": create, "update": update, "delete": delete}
    for phase, body in bodies.items():
        if stop_after != "all" and REQUEST_STOPS.index(stop_after) < REQUEST_STOPS.index(phase):
            break
        for key in range(first + 1, first + count + 1):
            with context(), sessions() as session:
                body(session, key)
                session.commit()


def child(
    workload: str, variant: str, stop_after: str, database: str, rows: int, batch: int
) -> None:
    """Set ``variant`` up on a new SQLite file and run the phases up to ``stop_after``."""
    engine = backends.make_engine("sqlite", sqlite_path=database)
    try:
        setup = set_up(variant, engine)
        if workload == "request":
            _one_object_phases(setup, 10**6, WARM_UP, "all")
            if stop_after != "setup":
                _one_object_phases(setup, 0, rows, stop_after)
            return
        with setup.context():
            for phase, run in zip(PHASES, (_insert, _update, _delete), strict=True):
                if STOPS.index(stop_after) < STOPS.index(phase):
                    break
                run(setup, rows, batch)
    finally:
        engine.dispose()


# --- the parent: callgrind runs and their differences --------------------------------------------


def _total(path: Path) -> int:
    """The instruction total of a callgrind output file."""
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("totals", "summary") and value.strip():
            found[key] = int(value.split()[0])
    if not found:
        raise RuntimeError(f"no totals: or summary: line in {path}")
    return found.get("totals", found.get("summary", 0))


def measure(
    tree: Path, variant: str, stop_after: str, *, workload: str, rows: int, batch: int
) -> int:
    """Instructions of one child run under callgrind, with ``auditlog`` imported from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory(prefix="auditlog-instructions-") as tmpdir:
        out = Path(tmpdir) / "callgrind.out"
        argv = [
            "valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}",
            sys.executable, "-m", "benchmarks.instructions", "--workload", workload,
            "--variant", variant, "--stop-after", stop_after,
            "--database", str(Path(tmpdir) / "bench.sqlite3"),
            "--rows", str(rows), "--batch", str(batch),
        ]  # fmt: skip
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{variant} --stop-after {stop_after} failed:\n{done.stderr}")
        return _total(out)


def phases(totals: dict[str, int], names: tuple[str, ...] = PHASES) -> dict[str, int]:
    """Each phase's instructions: the run stopped after it minus the run stopped before it."""
    stops = ("setup", *names)
    pairs = zip(stops[:-1], names, strict=True)
    return {phase: totals[phase] - totals[prev] for prev, phase in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--tree", type=Path, action="append", help="source tree (repeatable)")
    parser.add_argument(
        "--workload",
        choices=("write", "request"),
        default="write",
        help="write: batches (--rows, --batch); request: --rows one-object transactions per phase",
    )
    parser.add_argument(
        "--naive", action="store_true", help="also measure the naive listener (once, first tree)"
    )
    parser.add_argument("--rows", type=int, default=None, help="rows (write: 2000, request: 300)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel children")
    parser.add_argument("--stop-after", choices=(*STOPS, *REQUEST_PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    request = args.workload == "request"
    rows = args.rows or (300 if request else 2000)
    if args.stop_after:
        child(args.workload, args.variant, args.stop_after, args.database, rows, args.batch)
        return

    trees = [t.resolve() for t in args.tree or [ROOT]]
    for tree in trees:
        if not (tree / "src" / "auditlog" / "__init__.py").is_file():
            parser.error(f"{tree}/src/auditlog is not a package")
    names = REQUEST_PHASES if request else PHASES
    stops = ("setup", *names)
    once = ["plain", "naive"] if args.naive else ["plain"]
    runs = [(trees[0], variant, s) for variant in once for s in stops]
    runs += [(tree, "auditlog", s) for tree in trees for s in stops]

    def run(r: tuple[Path, str, str]) -> int:
        return measure(*r, workload=args.workload, rows=rows, batch=args.batch)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        counts = list(pool.map(run, runs))
    totals: dict[tuple[Path, str], dict[str, int]] = {}
    for (tree, variant, stop), count in zip(runs, counts, strict=True):
        totals.setdefault((tree, variant), {})[stop] = count

    plain = phases(totals[(trees[0], "plain")], names)
    unit = "transaction" if request else "row"
    shape = (
        f"{rows} one-object transactions per phase"
        if request
        else f"{rows} rows, {args.batch} per commit"
    )
    print(f"instructions per {unit}, SQLite, {shape}")
    print(f"plain{' and naive' if args.naive else ''} measured once, from {trees[0]}")
    header = f"{'tree':<32} {'phase':<7} {'plain':>10} {'audited':>10} {'ratio':>7} {'added':>10}"
    print(header)
    print("-" * len(header))
    measured = [(str(tree)[-32:], totals[(tree, "auditlog")]) for tree in trees]
    if args.naive:
        measured.insert(0, ("naive listener", totals[(trees[0], "naive")]))
    for name, counted in measured:
        audited = phases(counted, names)
        for phase in names:
            p, a = plain[phase] / rows, audited[phase] / rows
            print(f"{name:<32} {phase:<7} {p:>10,.0f} {a:>10,.0f} {a / p:>6.2f}x {a - p:>10,.0f}")


if __name__ == "__main__":
    main()
