"""``python -m auditlog``: the ``auditlog`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
