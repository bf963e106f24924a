"""``auditlog demo``, and the sample application behind it: a tiny lending app with two tenants.

:func:`run_sample_app` creates the tables and makes ordinary SQLAlchemy writes through an audited
``sessionmaker`` inside :func:`~auditlog.audit_context` blocks, as a web app's requests would:
several users and IP addresses per tenant, creates, updates, deletes, an access entry and a change
made by a background job (no user). Running it again adds another batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from ulid import ULID

from ..capture import enable, log_access
from ..context import audit_context
from ..integrations.http import Principal, token_authenticator
from ..integrations.server import make_wsgi_app
from ..models import AuditLog, create_tables
from ..registry import register
from .database import CommandError, first_line, open_database, shown
from .serve import check_token, serve

__all__ = [
    "TENANTS",
    "TOKEN_ENV",
    "Customer",
    "Loan",
    "SampleRun",
    "Tenant",
    "demo_command",
    "run_sample_app",
]

_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_MOBILE = "LendingApp/3.2 (iPhone; iOS 17.4)"


@dataclass(frozen=True)
class Tenant:
    """A demo tenant, its users and where they connect from."""

    id: str
    name: str
    users: tuple[str, str]
    addresses: tuple[str, str]


TENANTS = (
    Tenant(
        id="23067dbc-6c62-4203-9014-7100e4ffe811",
        name="Acme Lending",
        users=("6da08401-b1f7-46ec-9013-2a9d7bc6185c", "0b3c8d3e-5f1a-4c2b-9e7d-2a4f6c8e0b1d"),
        addresses=("203.0.113.7", "2001:db8::42"),
    ),
    Tenant(
        id="8f2b6a1e-3c4d-4e5f-9a7b-1c2d3e4f5a6b",
        name="Globex Finance",
        users=("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", "7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b"),
        addresses=("198.51.100.23", "192.0.2.10"),
    ),
)


def _ulid() -> str:
    return str(ULID())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "demo_customer"

    id: Mapped[str] = mapped_column(sa.String(26), primary_key=True, default=_ulid)
    tenant_id: Mapped[str] = mapped_column(sa.String(36))
    name: Mapped[str] = mapped_column(sa.String(100))
    type: Mapped[str] = mapped_column(sa.String(20), default="individual")
    status: Mapped[str] = mapped_column(sa.String(20), default="active")
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=_now)


class Loan(Base):
    __tablename__ = "demo_loan"

    id: Mapped[str] = mapped_column(sa.String(26), primary_key=True, default=_ulid)
    tenant_id: Mapped[str] = mapped_column(sa.String(36))
    customer_id: Mapped[str] = mapped_column(sa.ForeignKey(Customer.id))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    status: Mapped[str] = mapped_column(sa.String(20), default="draft")


@dataclass(frozen=True)
class SampleRun:
    """What :func:`run_sample_app` wrote."""

    entries: int
    tenants: tuple[Tenant, ...]


def _tenant_day(maker: sessionmaker[Session], tenant: Tenant, names: tuple[str, str]) -> None:
    """One tenant's working day: each block is one request of one user from one address."""
    clerk, manager = tenant.users
    office, remote = tenant.addresses
    clerk_request = audit_context(
        tenant_id=tenant.id, user_id=clerk, ip_address=office, user_agent=_BROWSER
    )
    with clerk_request, maker.begin() as session:
        person = Customer(tenant_id=tenant.id, name=names[0], tags=["retail"])
        company = Customer(tenant_id=tenant.id, name=names[1], type="business", tags=[])
        session.add_all([person, company])
        session.flush()
        loan = Loan(tenant_id=tenant.id, customer_id=person.id, amount=Decimal("250000.00"))
        spare = Loan(tenant_id=tenant.id, customer_id=company.id, amount=Decimal("1200.50"))
        session.add_all([loan, spare])
    with audit_context(tenant_id=tenant.id, user_id=manager, ip_address=remote, user_agent=_MOBILE):
        with maker.begin() as session:
            session.get_one(Loan, loan.id).status = "approved"
            session.get_one(Customer, company.id).tags = ["priority"]
        with maker.begin() as session:
            session.delete(session.get_one(Loan, spare.id))
        with maker.begin() as session:
            log_access(session, session.get_one(Customer, person.id))
    # A background job: no user, no address.
    with audit_context(tenant_id=tenant.id), maker.begin() as session:
        session.get_one(Loan, loan.id).status = "disbursed"


def run_sample_app(engine: Engine) -> SampleRun:
    """Create the audit and demo tables on ``engine`` and write a day of audited changes."""
    create_tables(engine)
    Base.metadata.create_all(engine)
    register(Customer)
    register(Loan)
    maker = sessionmaker(engine, expire_on_commit=False)
    enable(maker)
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(AuditLog)).scalar_one()
    _tenant_day(maker, TENANTS[0], ("Sukumar", "Vayana"))
    _tenant_day(maker, TENANTS[1], ("Hank Scorpio", "Initech"))
    with engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(AuditLog)).scalar_one()
    return SampleRun(entries=after - before, tenants=TENANTS)


#: The environment variable of the token ``auditlog demo`` accepts (not shown by ``ps``).
TOKEN_ENV = "AUDITLOG_DEMO_TOKEN"


def _given_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, $AUDITLOG_DEMO_TOKEN or --token, checked; None if none."""
    if args.token_file:
        try:
            text = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            raise CommandError(f"--token-file: cannot read {args.token_file!r}: {exc}", 2) from None
        return check_token(text, "--token-file")
    if os.environ.get(TOKEN_ENV):
        return check_token(os.environ[TOKEN_ENV].strip(), TOKEN_ENV)
    return check_token(args.token, "--token") if args.token else None


def demo_command(args: argparse.Namespace) -> int:
    """Run the sample application's writes, then serve ``GET /history/`` for its first tenant."""
    token = _given_token(args) or secrets.token_urlsafe(24)
    stack = ExitStack()
    try:
        raw_url = args.database_url
        if raw_url is None:
            folder = tempfile.mkdtemp(prefix="auditlog-demo-")
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
            raw_url = f"sqlite:///{Path(folder) / 'auditlog-demo.sqlite3'}"
        engine = open_database(raw_url, create=True)
        stack.callback(engine.dispose)
        try:
            run = run_sample_app(engine)
        except SQLAlchemyError as exc:
            raise CommandError(f"the sample application failed: {first_line(exc)}") from None
        tenant = run.tenants[0]
        app = make_wsgi_app(
            sessionmaker(engine),
            token_authenticator({token: Principal(tenant.id, tenant.users[0])}),
        )
        names = ", ".join(t.name for t in run.tenants)

        def banner(base: str) -> list[str]:
            return [
                f"auditlog demo: {run.entries} audit entries for {len(run.tenants)} tenants "
                f"({names}) in {shown(engine.url)}",
                f"Serving GET /history/ at {base}/history/ (Ctrl+C to stop)",
                f"Viewer: {base}/history/view/ (sign in with the token)",
                f"Token (tenant {tenant.name}, {tenant.id}): {token}",
                "Try:",
                f'  curl -H "Authorization: Bearer {token}" "{base}/history/?action_type=create"',
            ]

        return serve(app, args.host, args.port, banner, args.idle_timeout)
    finally:
        stack.close()
