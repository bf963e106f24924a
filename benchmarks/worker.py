"""One measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

The spec names the backend, the variant, the task and its sizes; the worker resets the database
(or uses the new SQLite file it is given), sets the variant up, runs the task and prints one JSON
line on stdout. The parent (``__main__.py``) starts one worker per run, alternating variants.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from . import backends, workloads
from .variants import set_up


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the task ``spec`` describes and return its figures."""
    backend = spec["backend"]
    backends.reset(backend)
    engine = backends.make_engine(
        backend, schema=backends.WRITE_SCHEMA, sqlite_path=spec.get("sqlite_path")
    )
    try:
        setup = set_up(spec["variant"], engine)
        task = spec["task"]
        if task == "write":
            return workloads.write(setup, rows=spec["rows"], batch=spec["batch"])
        if task == "request":
            return workloads.request(setup, count=spec["count"])
        if task == "flush":
            sizes = tuple(spec["sizes"])
            repeat = {int(k): v for k, v in spec["repeat"].items()}
            return workloads.flushes(setup, sizes=sizes, repeat=repeat)
        if task == "bulk":
            return workloads.bulk(setup, rows=spec["rows"])
        if task == "memory":
            return workloads.memory(setup, objects=spec["objects"])
        if task == "profile":
            from .profiling import profile

            return profile(setup, **spec["options"])
        raise ValueError(f"unknown task {task!r}")
    finally:
        engine.dispose()


def main() -> None:
    result = run(json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
