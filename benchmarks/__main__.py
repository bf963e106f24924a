"""Command line of the benchmark suite: ``python -m benchmarks --help`` (see ``__init__.py``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import backends, charts
from .report import PHASES, REQUEST_PHASES, Table, summarise
from .variants import POSTGRESQL_ONLY

TASKS = ("write", "request", "flush", "bulk", "memory", "reads", "profile")
COMPARABLE = ("naive", "continuum", "trigger", "in-database", "audit-trail", "stdlib-json")
#: compared by default; stdlib-json (auditlog without orjson) only when asked for
DEFAULT_COMPARE = ("naive", "continuum", "trigger", "audit-trail")
#: compared variants run as often as plain and auditlog (``--runs``), not ``--compare-runs``:
#: cheap, and close enough to auditlog that a single run would not tell them apart
EVERY_RUN = frozenset({"naive", "in-database"})
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _csv(choices: tuple[str, ...], *, extra: tuple[str, ...] = ()) -> Any:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        for item in items:
            if item not in choices + extra:
                raise argparse.ArgumentTypeError(
                    f"unknown value {item!r}; choose from {', '.join(choices + extra)}"
                )
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure what auditing costs: writes, requests, flushes, bulk statements, "
        "memory, reads.",
    )
    parser.add_argument(
        "--backend",
        type=_csv(backends.BACKENDS, extra=("all",)),
        default=["postgresql"],
        help="sqlite, postgresql, mariadb, a comma-separated list, or all (default: postgresql)",
    )
    parser.add_argument(
        "--only",
        type=_csv(TASKS),
        default=None,
        help=f"comma-separated tasks among {', '.join(TASKS)} (default: all; profile on PostgreSQL)",
    )
    parser.add_argument(
        "--compare",
        type=_csv(COMPARABLE, extra=("none",)),
        default=list(DEFAULT_COMPARE),
        help="variants run side by side: naive (a hand-written listener), continuum, trigger, "
        "audit-trail, or none (trigger and audit-trail on PostgreSQL only; default: all four); "
        "stdlib-json adds auditlog writing its JSON with the standard library instead of orjson",
    )
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the write workload")
    parser.add_argument("--batch", type=int, default=1_000, help="rows per commit (default 1000)")
    parser.add_argument(
        "--request-count",
        type=int,
        default=2_000,
        help="one-object transactions per phase of the request task (default 2000)",
    )
    parser.add_argument("--runs", type=int, default=5, help="fresh-process runs per variant")
    parser.add_argument(
        "--compare-runs",
        type=int,
        default=3,
        help="runs of the compared libraries, naive excepted (default 3)",
    )
    parser.add_argument(
        "--memory-objects", type=int, default=100_000, help="objects in the memory flush"
    )
    parser.add_argument(
        "--read-rows",
        type=int,
        default=None,
        help="audit entries seeded for reads (default 1,000,000 on PostgreSQL, 200,000 elsewhere)",
    )
    parser.add_argument("--read-repeat", type=int, default=30, help="timed calls per query")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a minute or two: small sizes, 2 runs"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="folder of the JSON results and profiles"
    )
    parser.add_argument(
        "--charts",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of the PNG charts (default: --output; with --report: the file's folder)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE",
        help="print the tables of a results file again (refresh its summary, redraw its "
        "charts), run nothing",
    )
    args = parser.parse_args(argv)
    if "all" in args.backend:
        args.backend = list(backends.BACKENDS)
    if "none" in args.compare:
        args.compare = []
    args.only = args.only or [t for t in TASKS if t != "profile"] + ["profile"]
    args.flush_sizes = [1, 10, 100]
    args.flush_repeat = {1: 120, 10: 60, 100: 25}
    if args.quick:
        args.rows = min(args.rows, 2_000)
        args.request_count = min(args.request_count, 300)
        args.runs = min(args.runs, 2)
        args.compare_runs = min(args.compare_runs, 1)
        args.memory_objects = min(args.memory_objects, 10_000)
        args.read_rows = args.read_rows or 50_000
        args.read_repeat = min(args.read_repeat, 10)
        args.flush_repeat = {1: 30, 10: 20, 100: 8}
    return args


# --- running workers ----------------------------------------------------------------------------


def _worker(spec: dict[str, Any], tmpdir: str) -> dict[str, Any]:
    """Run one spec in a fresh interpreter; SQLite gets a new database file."""
    if spec["backend"] == "sqlite":
        fd, path = tempfile.mkstemp(suffix=".sqlite3", dir=tmpdir)
        os.close(fd)
        spec = {**spec, "sqlite_path": path}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if spec.get("sqlite_path"):
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(spec["sqlite_path"] + suffix).unlink(missing_ok=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _variants(args: argparse.Namespace, backend: str, task: str) -> list[str]:
    if task == "memory":
        return ["plain", "auditlog"]
    compared = [v for v in args.compare if backend == "postgresql" or v not in POSTGRESQL_ONLY]
    return ["plain", "auditlog", *compared]


def _alternating(args: argparse.Namespace, backend: str, task: str, spec: dict[str, Any]) -> dict:
    """Run every variant ``runs`` times, alternating their order, each run in a new process."""
    variants = _variants(args, backend, task)
    runs: dict[str, list[Any]] = {v: [] for v in variants}
    errors: dict[str, str] = {}
    total_runs = args.runs if task != "memory" else min(args.runs, 2)
    with tempfile.TemporaryDirectory(prefix="auditlog-bench-") as tmpdir:
        for i in range(total_runs):
            order = variants if i % 2 == 0 else variants[::-1]
            for variant in order:
                if variant in COMPARABLE and variant not in EVERY_RUN and i >= args.compare_runs:
                    continue
                if variant in errors:
                    continue
                t = time.perf_counter()
                result = _worker({**spec, "backend": backend, "variant": variant}, tmpdir)
                if "error" in result:
                    errors[variant] = result["error"]
                    print(f"  {task} {variant}: FAILED {result['error']}", file=sys.stderr)
                    continue
                runs[variant].append(result)
                print(
                    f"  {backend} {task} run {i + 1}/{total_runs} {variant}: "
                    f"{time.perf_counter() - t:.1f}s",
                    file=sys.stderr,
                )
    return {"runs": {v: r for v, r in runs.items() if r}, "errors": errors}


def run_backend(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    results: dict[str, Any] = {"backend": backend, "server": _server_version(backend)}
    if "write" in args.only:
        spec = {"task": "write", "rows": args.rows, "batch": args.batch}
        results["write"] = {**_alternating(args, backend, "write", spec), **spec}
    if "request" in args.only:
        spec = {"task": "request", "count": args.request_count}
        results["request"] = {**_alternating(args, backend, "request", spec), **spec}
    if "flush" in args.only:
        spec = {"task": "flush", "sizes": args.flush_sizes, "repeat": args.flush_repeat}
        results["flush"] = {**_alternating(args, backend, "flush", spec), **spec}
    if "bulk" in args.only:
        spec = {"task": "bulk", "rows": args.rows}
        results["bulk"] = {**_alternating(args, backend, "bulk", spec), **spec}
    if "memory" in args.only:
        spec = {"task": "memory", "objects": args.memory_objects}
        results["memory"] = {**_alternating(args, backend, "memory", spec), **spec}
    if "reads" in args.only:
        results["reads"] = _reads(args, backend)
    if "profile" in args.only and (backend == "postgresql" or args.only == ["profile"]):
        results["profile"] = _profile(args, backend)
    return results


def _reads(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    from .reads import run_reads

    rows = args.read_rows or (1_000_000 if backend == "postgresql" else 200_000)
    sqlite_path = str(Path(tempfile.gettempdir()) / "auditlog-bench-reads.sqlite3")
    print(f"  {backend} reads: {rows} entries", file=sys.stderr)
    out = run_reads(backend, rows=rows, repeat=args.read_repeat, sqlite_path=sqlite_path)
    plans = out.pop("plans")
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"explain-{backend}.txt"
    with path.open("w") as f:
        for name, statements in plans.items():
            for st in statements:
                f.write(f"== {name}\n{st['sql']}\n\n{st['plan']}\n\n")
    out["plans_file"] = str(path)
    return out


def _profile(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flushes = 20 if args.quick else 100
    with tempfile.TemporaryDirectory(prefix="auditlog-bench-") as tmpdir:
        for tool, suffix in (("pyinstrument", "txt"), ("cprofile", "pstats")):
            output = str(args.output / f"profile-{backend}.{suffix}")
            spec = {
                "task": "profile",
                "backend": backend,
                "variant": "auditlog",
                "options": {"tool": tool, "size": 100, "flushes": flushes, "output": output},
            }
            print(f"  {backend} profile ({tool})", file=sys.stderr)
            out[tool] = _worker(spec, tmpdir)
    return out


# --- environment --------------------------------------------------------------------------------


def _server_version(backend: str) -> str:
    if backend == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    import sqlalchemy as sa

    engine = sa.create_engine(backends.url_for(backend))
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT version()").scalar())
    finally:
        engine.dispose()


def _git(*argv: str) -> str:
    done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for dist in (
        "sqlalchemy", "psycopg", "pymysql", "pydantic", "python-ulid",
        "sqlalchemy-continuum", "sqlalchemy-audit-trail", "sqlalchemy-auditlog",
    ):  # fmt: skip
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    done = subprocess.run(
        [sys.executable, "-c", "import auditlog; print(auditlog.__file__)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "auditlog_source": done.stdout.strip(),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "commit": _git("rev-parse", "HEAD"),
        "src_changes": _git("status", "--porcelain", "--", "src"),
        "loadavg_start": os.getloadavg(),
    }


# --- printing -----------------------------------------------------------------------------------


def print_summary(backend: str, results: dict[str, Any], summary: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"\n### {backend}: {results['server']}\n\n")
    if "write" in summary:
        variants = list(summary["write"])
        headers = ["phase", "plain ms"]
        for v in variants[1:]:
            headers += [f"{v} ms", "ratio"]
        table = Table(
            f"Write workload: {results['write']['rows']} rows, {results['write']['batch']} per "
            "commit (ms: median of fresh-process runs; ratio: median of per-run ratios to plain)",
            headers,
        )
        for phase in PHASES:
            cells: list[Any] = [phase, summary["write"]["plain"][phase]["ms"]]
            for v in variants[1:]:
                cells += [summary["write"][v][phase]["ms"], summary["write"][v][phase]["ratio"]]
            table.add(*cells)
        out.write(table.render() + "\n")
    if "request" in summary:
        out.write(_request_table(results, summary["request"]).render() + "\n")
    if "flush" in summary:
        variants = list(summary["flush"])
        headers = ["objects", "op", "plain ms"]
        for v in variants[1:]:
            headers += [f"{v} ms", "+us/obj"]
        table = Table(
            "Flush latency: commit() of N objects (ms: median; +us/obj: median over runs of "
            "(variant - plain of the same run) / N)",
            headers,
        )
        for size in results["flush"]["sizes"]:
            for op in ("create", "update"):
                row = summary["flush"]["plain"][str(size)][op]
                cells = [size, op, row["ms"]]
                for v in variants[1:]:
                    r = summary["flush"][v][str(size)][op]
                    cells += [r["ms"], r["added_us_per_object"]]
                table.add(*cells)
        out.write(table.render() + "\n")
    if "bulk" in summary:
        table = Table(
            f"Bulk statements over {results['bulk']['rows']} rows",
            ["variant", "update ms", "ratio", "entries", "delete ms", "ratio", "entries"],
        )
        for v, r in summary["bulk"].items():
            u, d = r["update"], r["delete"]
            table.add(v, u["ms"], u["ratio"], u["entries"], d["ms"], d["ratio"], d["entries"])
        out.write(table.render() + "\n")
    if "memory" in summary:
        table = Table(
            f"Memory: one flush of {results['memory']['objects']} new objects",
            ["variant", "peak RSS MB", "added by flush MB", "commit s"],
        )
        for v, r in summary["memory"].items():
            table.add(v, r["peak_mb"], r["flush_mb"], r["commit_s"])
        out.write(table.render() + "\n")
    if "reads" in summary:
        reads = summary["reads"]
        table = Table(
            f"query_history over {reads['rows']} entries ({reads['tenant_rows']} in the tenant read)",
            ["query", "p50 ms", "p95 ms", "indexes (per statement: count; page)"],
        )
        for name, r in reads["queries"].items():
            table.add(name, r["p50_ms"], r["p95_ms"], "; ".join(r.get("indexes", [])))
        out.write(table.render() + "\n")
    profile = results.get("profile", {}).get("cprofile", {})
    if profile.get("auditlog_by_cumulative"):
        table = Table(
            "Profile of audited 100-object commits: auditlog functions by cumulative share",
            ["function", "calls", "cum %", "own %"],
        )
        for r in profile["auditlog_by_cumulative"][:12]:
            table.add(r["function"], r["calls"], 100 * r["cum_share"], 100 * r["own_share"])
        out.write(table.render() + "\n")
    for task in ("write", "request", "flush", "bulk", "memory"):
        for variant, error in results.get(task, {}).get("errors", {}).items():
            out.write(f"{task} {variant} failed: {error}\n")


def _request_table(results: dict[str, Any], summary: dict[str, Any]) -> Table:
    headers = ["variant"]
    for phase in REQUEST_PHASES:
        headers += [f"{phase} ms", "ratio", "+us"]
    table = Table(
        f"Requests: {results['request']['count']} one-object transactions per phase, each in a "
        "new session (ms: per transaction, median of fresh-process runs; ratio: median of "
        "per-run ratios to plain; +us: median of variant - plain per transaction)",
        [*headers, "entries"],
    )
    for variant, phases in summary.items():
        cells: list[Any] = [variant]
        for phase in REQUEST_PHASES:
            r = phases[phase]
            cells += [r["ms"], r["ratio"], r["added_us"]]
        table.add(*cells, results["request"]["runs"][variant][0]["entries"])
    return table


def _charts(everything: dict[str, Any], directory: Path) -> None:
    for path in charts.render(everything, directory):
        print(f"chart: {path}")


def report(path: Path, charts_dir: Path) -> None:
    """Recompute the summaries of a results file, print them, store them back, redraw the charts."""
    everything = json.loads(path.read_text())
    for backend, data in everything["backends"].items():
        data["summary"] = summarise(data["results"])
        print_summary(backend, data["results"], data["summary"])
    path.write_text(json.dumps(everything, indent=1, default=str))
    _charts(everything, charts_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        report(args.report, args.charts or args.report.parent)
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    env = environment()
    everything: dict[str, Any] = {"environment": env, "options": _options(args), "backends": {}}
    for backend in args.backend:
        start = time.perf_counter()
        results = run_backend(args, backend)
        results["seconds"] = time.perf_counter() - start
        summary = summarise(results)
        everything["backends"][backend] = {"summary": summary, "results": results}
        print_summary(backend, results, summary)
    env["loadavg_end"] = os.getloadavg()
    path = args.output / f"bench-{stamp}.json"
    path.write_text(json.dumps(everything, indent=1, default=str))
    print(f"results: {path}")
    _charts(everything, args.charts or args.output)
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


if __name__ == "__main__":
    raise SystemExit(main())
