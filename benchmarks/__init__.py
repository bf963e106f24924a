"""Benchmarks of auditlog: what auditing costs on writes, flushes, bulk statements, memory and reads.

Runnable measurements, never timed assertions in tests. Results and how to read them:
docs/performance.md.

Run
---
From the repository root, in an environment with the project, SQLAlchemy 2.0, the drivers and
the compared libraries (``nox -s bench`` builds it)::

    python -m benchmarks                          # PostgreSQL, everything (about 15 minutes)
    python -m benchmarks --quick                  # a smoke run of a minute or two
    python -m benchmarks --backend all            # SQLite, PostgreSQL and MariaDB in turn
    python -m benchmarks --backend sqlite --only write,flush --compare continuum
    python -m benchmarks --only reads --read-rows 1000000
    nox -s bench -- --backend mariadb --runs 3

Options: ``--backend sqlite|postgresql|mariadb|all`` (comma-separated), ``--only
write,flush,bulk,memory,reads,profile``, ``--compare continuum,trigger,audit-trail|none``,
``--rows`` (10,000), ``--batch`` (1,000 per commit), ``--runs`` (5), ``--compare-runs`` (3),
``--memory-objects`` (100,000), ``--read-rows`` (1M on PostgreSQL, 200k elsewhere),
``--read-repeat`` (30), ``--quick``, ``--output`` (benchmarks/results/).

Databases: ``AUDITLOG_BENCH_POSTGRESQL_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/bench``) and ``AUDITLOG_BENCH_MARIADB_URL``
(default ``mariadb+pymysql://root@127.0.0.1:3306/bench``); SQLite uses temporary files. The
benchmarks own these databases: write runs drop the schema ``bench_write`` (and ``audit``) on
PostgreSQL and every table of the MariaDB database. Reads keep their seeded log in the schema
``bench_reads`` on PostgreSQL and reuse it while its size matches.

What is measured
----------------
- ``write``: 10,000 rows of a nine-column model (JSON, Numeric, DateTime...) inserted, updated in
  two columns, then deleted, 1,000 rows per commit, plain and audited, each run in a fresh process,
  variants alternating; medians and the audited/plain ratio of the same invocation, per phase.
- ``flush``: ``commit()`` of 1, 10 and 100 new (then changed) objects; added microseconds per
  object (audited minus plain, divided by the objects).
- ``bulk``: ``update()`` and ``delete()`` statements over 10,000 rows, and how many entries they left.
- ``memory``: peak RSS of one flush of 100,000 new objects, in a fresh process.
- ``reads``: ``query_history`` page 1 for each filter, a deep page by number and by cursor, over a
  million entries of 500 tenants; p50/p95 and the plan of each statement.
- ``profile``: pyinstrument and cProfile of audited 100-object commits (PostgreSQL).

Side by side, in the same invocation: SQLAlchemy-Continuum 2.0, sqlalchemy-audit-trail 0.2
(PostgreSQL) and a row-level trigger writing ``to_jsonb(OLD)``/``to_jsonb(NEW)`` (PostgreSQL).

Layout: ``__main__.py`` (command line, runs, tables), ``worker.py`` (one run in a fresh process),
``variants.py`` (the model and each way of auditing it), ``workloads.py`` (write, flush, bulk,
memory), ``reads.py``, ``profiling.py``, ``report.py`` (medians, ratios, tables),
``backends.py`` (URLs and clean slates).
"""
