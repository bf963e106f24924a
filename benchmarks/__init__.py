"""Benchmarks of auditlog: what auditing costs on writes, requests, flushes, bulk, memory and reads.

Runnable measurements, never timed assertions in tests. Results and how to read them:
docs/performance.md.

Run
---
From the repository root, in an environment with the project, SQLAlchemy 2.0, the drivers,
the compared libraries and matplotlib (``nox -s bench`` builds it)::

    python -m benchmarks                          # PostgreSQL, everything (about 15 minutes)
    python -m benchmarks --quick                  # a smoke run of a minute or two
    python -m benchmarks --backend all            # SQLite, PostgreSQL and MariaDB in turn
    python -m benchmarks --backend sqlite --only write,flush --compare continuum
    python -m benchmarks --only request --request-count 5000 --compare naive
    python -m benchmarks --only reads --read-rows 1000000
    nox -s bench -- --backend mariadb --runs 3
    python -m benchmarks --report benchmarks/results/bench-20250101-120000.json --charts /tmp

Options: ``--backend sqlite|postgresql|mariadb|all`` (comma-separated), ``--only
write,request,flush,bulk,memory,reads,profile``, ``--compare
naive,continuum,trigger,audit-trail,stdlib-json|none`` (default: the first four),
``--rows`` (10,000), ``--batch`` (1,000 per commit), ``--request-count`` (2,000 transactions per
phase; 300 with ``--quick``), ``--runs`` (5), ``--compare-runs`` (3; naive runs ``--runs`` times),
``--memory-objects`` (100,000), ``--read-rows`` (1M on PostgreSQL, 200k elsewhere),
``--read-repeat`` (30), ``--quick``, ``--output`` (benchmarks/results/), ``--charts`` (folder of
the PNG charts; default ``--output``), ``--report FILE`` (print a results file's tables again,
refresh its summary and redraw its charts, next to it unless ``--charts`` says otherwise).

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
- ``request``: what one web request's transaction costs: 2,000 transactions per phase, each
  entering the variant's context (actor, tenant...), opening a session, doing its work with one
  object, committing and closing; create adds a new object, update loads one with
  ``session.get`` and changes two columns, delete loads one and deletes it. One engine (and its
  pool) per process, fresh processes, variants alternating; per transaction: the median in ms,
  the paired ratio to plain and the added microseconds (variant minus plain of the same run).
- ``flush``: ``commit()`` of 1, 10 and 100 new (then changed) objects; added microseconds per
  object (audited minus plain, divided by the objects).
- ``bulk``: ``update()`` and ``delete()`` statements over 10,000 rows, and how many entries they left.
- ``memory``: peak RSS of one flush of 100,000 new objects, in a fresh process.
- ``reads``: ``query_history`` page 1 for each filter, a deep page by number and by cursor, over a
  million entries of 500 tenants; p50/p95 and the plan of each statement.
- ``profile``: pyinstrument and cProfile of audited 100-object commits (PostgreSQL).

Side by side, in the same invocation: ``naive``, the audit a team would write by hand (a
``before_flush`` listener collecting each new, changed and deleted object's column values, only
the changed ones for an update, and an ``after_flush`` listener inserting one ``naive_audit`` row
per object with one executemany, every database), SQLAlchemy-Continuum 2.0, sqlalchemy-audit-trail
0.2 (PostgreSQL) and a row-level trigger writing ``to_jsonb(OLD)``/``to_jsonb(NEW)`` (PostgreSQL).

Charts: ``write-ratios.png`` and ``request-ratios.png`` in the ``--charts`` folder, one row per
backend, for each phase a bar per variant with its ratio to plain (a dashed line at 1.0, the
value on each bar; ratios far above the rest, Continuum's, are cut and hatched). They need
matplotlib; without it the run prints a notice and draws none.

Layout: ``__main__.py`` (command line, runs, tables), ``worker.py`` (one run in a fresh process),
``variants.py`` (the model and each way of auditing it), ``workloads.py`` (write, request, flush,
bulk, memory), ``reads.py``, ``profiling.py``, ``report.py`` (medians, ratios, tables),
``charts.py`` (the PNG charts), ``backends.py`` (URLs and clean slates).
"""
