"""query_history and query_history_cursor: filters, order, both paging modes, errors, async."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog, ContentType, InvalidQueryError, query_history
from auditlog.capture.ids import new_ulids
from auditlog.query import (
    Cursor,
    query_history_async,
    query_history_cursor,
    query_history_cursor_async,
)

from ..helpers import entries
from ..models import Customer, Loan, Membership

T1 = "23067dbc-6c62-4203-9014-7100e4ffe811"
T2 = "8d2cbd4c-3f0b-4f43-a0d1-5a4b4d6f1c11"
SEED_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(autouse=True)
def _registered() -> None:
    auditlog.register(Customer, mask={"password"})
    auditlog.register(Membership)


def ids(page: Any) -> list[str]:
    return [entry.id for entry in page.results]


def newest_first(engine: Engine, **filters: Any) -> list[str]:
    """Entry ids straight from the table, in the order query_history must give them."""
    return [entry.id for entry in reversed(entries(engine, **filters))]


def write_history(maker: sessionmaker[Session]) -> None:
    """A small, varied history written through the library: 7 entries, 2 tenants, 3 users."""
    with (
        auditlog.audit_context(tenant_id=T1, user_id="u1", ip_address="10.0.0.1"),
        maker.begin() as session,
    ):
        ada = Customer(id=1, tenant_id=T1, name="Ada", password="s3cret")
        bob = Customer(id=2, tenant_id=T1, name="Bob")
        session.add_all([ada, bob])  # one flush: two entries sharing a timestamp
    with (
        auditlog.audit_context(tenant_id=T1, user_id="u2", ip_address="2001:DB8:0:0::0001"),
        maker.begin() as session,
    ):
        session.get(Customer, 1).name = "Ada Lovelace"  # type: ignore[union-attr]
    with (
        auditlog.audit_context(tenant_id=T2, user_id="u1", ip_address="10.0.0.2"),
        maker.begin() as session,
    ):
        session.add(Customer(id=3, tenant_id=T2, name="Cy"))
    with (
        auditlog.audit_context(tenant_id=T1, user_id="u1", ip_address="10.0.0.1"),
        maker.begin() as session,
    ):
        session.delete(session.get(Customer, 2))
    with (
        auditlog.audit_context(tenant_id=T1, user_id="u1", ip_address="10.0.0.1"),
        maker.begin() as session,
    ):
        session.add(Membership(org="o", member=1, role="admin"))
    with auditlog.audit_context(tenant_id=T1, user_id="u3"), maker.begin() as session:
        auditlog.log_access(session, session.get(Customer, 1))


def content_type_id(engine: Engine, name: str) -> int:
    """The id of a content type row, created if missing (rows outlive the per-test cleanup)."""
    with engine.begin() as conn:
        found = conn.scalar(sa.select(ContentType.id).where(ContentType.name == name))
        if found is None:
            conn.execute(sa.insert(ContentType).values(name=name, table_name="manual"))
            found = conn.scalar(sa.select(ContentType.id).where(ContentType.name == name))
    assert found is not None
    return found


def insert_entries(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Audit rows written directly, for cases that need exact times or many rows."""
    ctype = content_type_id(engine, "tests.manual")
    defaults = {
        "tenant_id": T1,
        "user_id": "u1",
        "action_type": "create",
        "ip_address": None,
        "user_agent": "",
        "object_id": "1",
        "content_type": ctype,
        "before_state": None,
        "after_state": {"n": 1},
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(AuditLog), [{**defaults, **row} for row in rows])


def many_entries(engine: Engine, count: int, start: dt.datetime | None = None) -> None:
    """``count`` entries a millisecond apart, in pairs sharing a timestamp (as one flush writes)."""
    start = start or dt.datetime(2025, 3, 26, 13, 0, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(0, count, 2):
        at = start + dt.timedelta(milliseconds=i)
        for ulid in new_ulids(at, min(2, count - i)):
            rows.append({"id": ulid, "timestamp": at, "object_id": str(i)})
    insert_entries(engine, rows)


# --- filters ------------------------------------------------------------------------------------


def test_without_filters_every_entry_comes_newest_first(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_history(Session_)
    with Session_() as session:
        page = query_history(session)
    assert page.count == 7
    assert ids(page) == newest_first(engine)
    assert [e.action_type for e in page.results] == [
        "access", "create", "delete", "create", "update", "create", "create",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"tenant_id": T1}, {"tenant_id": T1}),
        ({"tenant_id": T2}, {"tenant_id": T2}),
        ({"user_id": "u1"}, {"user_id": "u1"}),
        ({"user_id": "u3"}, {"user_id": "u3"}),
        ({"ip_address": "10.0.0.1"}, {"ip_address": "10.0.0.1"}),
        ({"ip_address": " 10.0.0.2 "}, {"ip_address": "10.0.0.2"}),
        ({"ip_address": "2001:db8::1"}, {"ip_address": "2001:db8::1"}),
        ({"ip_address": "2001:0DB8:0000::1"}, {"ip_address": "2001:db8::1"}),
        ({"action_type": "update"}, {"action_type": "update"}),
        ({"action_type": "delete"}, {"action_type": "delete"}),
        ({"action_type": "access"}, {"action_type": "access"}),
        ({"object_id": "2"}, {"object_id": "2"}),
        ({"object_id": 1}, {"object_id": "1"}),
    ],
)
def test_each_filter_selects_exactly_its_entries(
    engine: Engine,
    Session_: sessionmaker[Session],
    filters: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    write_history(Session_)
    with Session_() as session:
        page = query_history(session, **filters)
    assert page.results
    assert ids(page) == newest_first(engine, **expected)
    assert page.count == len(page.results)


def test_an_ipv6_address_is_stored_and_matched_in_its_normal_form(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_history(Session_)
    with Session_() as session:
        page = query_history(session, ip_address="2001:DB8::0001")
    assert [(e.action_type, e.ip_address) for e in page.results] == [("update", "2001:db8::1")]


@pytest.mark.parametrize(
    "action_type",
    ["create,delete", " create , DELETE ", ["create", "delete"], ("delete", "create", "create")],
)
def test_action_type_takes_one_value_a_list_or_a_comma_separated_string(
    engine: Engine, Session_: sessionmaker[Session], action_type: Any
) -> None:
    write_history(Session_)
    expected = [e.id for e in reversed(entries(engine)) if e.action_type in {"create", "delete"}]
    with Session_() as session:
        page = query_history(session, action_type=action_type)
    assert ids(page) == expected
    assert len(expected) == 5


@pytest.mark.parametrize("key", [("o", 1), ["o", 1], '["o",1]'])
def test_a_composite_key_is_given_as_a_tuple_or_as_its_stored_text(
    engine: Engine, Session_: sessionmaker[Session], key: Any
) -> None:
    write_history(Session_)
    with Session_() as session:
        page = query_history(session, object_id=key)
    (entry,) = page.results
    assert entry.object_id == '["o",1]'
    assert entry.after_state == {"org": "o", "member": 1, "role": "admin"}


def test_content_type_is_an_id_a_mapped_class_or_a_name(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_history(Session_)
    expected = newest_first(engine)
    customer_ids = [e.id for e in reversed(entries(engine)) if e.object_id != '["o",1]']
    with Session_() as session:
        ctype = query_history(session, content_type=Customer).results[0].content_type
        assert ids(query_history(session, content_type=Customer)) == customer_ids
        assert ids(query_history(session, content_type=ctype)) == customer_ids
        assert ids(query_history(session, content_type=str(ctype))) == customer_ids
        assert ids(query_history(session, content_type="tests.models.Customer")) == customer_ids
        membership = query_history(session, content_type=Membership)
        assert ids(membership) == [e for e in expected if e not in customer_ids]
        assert membership.results[0].content_type != ctype
        # a model never audited has no entries; a name no model has is an error listing them
        assert query_history(session, content_type=Loan).count == 0
        with pytest.raises(InvalidQueryError, match="content_type: no model is named") as caught:
            query_history(session, content_type="no.such.Model")
        assert "tests.models.Customer" in str(caught.value)


def test_content_type_takes_a_class_name_alone_while_one_model_has_it(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    others = ~ContentType.name.startswith("tests.models.")  # e.g. the demo's Customer and Loan
    with engine.begin() as connection:  # models of other tests on this database (no entries left)
        connection.execute(sa.delete(ContentType).where(others))
    write_history(Session_)
    with Session_() as session:
        customers = ids(query_history(session, content_type="tests.models.Customer"))
        assert ids(query_history(session, content_type="Customer")) == customers
        assert query_history(session, content_type="Loan").count == 0  # mapped, never audited
        with pytest.raises(InvalidQueryError, match=r"no model is named 'models\.Customer'"):
            query_history(session, content_type="models.Customer")  # not the module nor the class
        with pytest.raises(InvalidQueryError, match="no model is named 'customer'"):
            query_history(session, content_type="customer")  # names are exact on every backend
    with engine.begin() as connection:  # another module's Customer gets entries
        connection.execute(sa.insert(ContentType).values(name="billing.models.Customer"))
    with Session_() as session:
        with pytest.raises(
            InvalidQueryError, match="several models are named 'Customer'"
        ) as caught:
            query_history(session, content_type="Customer")
        assert "billing.models.Customer, tests.models.Customer" in str(caught.value)
        assert ids(query_history(session, content_type="tests.models.Customer")) == customers
    with engine.begin() as connection:
        connection.execute(sa.delete(ContentType).where(others))


def test_filters_combine_with_and(engine: Engine, Session_: sessionmaker[Session]) -> None:
    write_history(Session_)
    with Session_() as session:
        page = query_history(
            session, tenant_id=T1, user_id="u1", ip_address="10.0.0.1", action_type="create,delete"
        )
        assert [(e.action_type, e.object_id) for e in page.results][:2] == [
            ("create", '["o",1]'), ("delete", "2"),
        ]  # fmt: skip
        assert ids(page) == [
            e.id
            for e in reversed(entries(engine, tenant_id=T1, user_id="u1"))
            if e.action_type != "access" and e.ip_address == "10.0.0.1"
        ]
        assert page.count == 4
        one = query_history(
            session, tenant_id=T1, user_id="u1", action_type="delete", object_id=2,
            content_type=Customer,
        )  # fmt: skip
        assert [(e.action_type, e.object_id) for e in one.results] == [("delete", "2")]
        assert query_history(session, tenant_id=T2, user_id="u2").count == 0
        assert query_history(session, tenant_id=T1, object_id=3).count == 0


def test_ids_given_as_other_types_match_their_text(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    import uuid

    write_history(Session_)
    with Session_() as session:
        assert query_history(session, tenant_id=uuid.UUID(T2)).count == 1


# --- time window and order ----------------------------------------------------------------------


def test_since_is_inclusive_and_until_exclusive(engine: Engine) -> None:
    base = dt.datetime(2025, 3, 26, 13, 53, 2, 869449, tzinfo=dt.timezone.utc)
    times = [base + dt.timedelta(seconds=s) for s in range(5)]
    insert_entries(
        engine,
        [
            {"id": new_ulids(t, 1)[0], "timestamp": t, "object_id": str(i)}
            for i, t in enumerate(times)
        ],
    )
    with Session(engine) as session:
        page = query_history(session, since=times[1], until=times[3])
        assert [e.object_id for e in page.results] == ["2", "1"]
        assert [e.object_id for e in query_history(session, since=times[3]).results] == ["4", "3"]
        assert [e.object_id for e in query_history(session, until=times[1]).results] == ["0"]
        # naive datetimes are UTC; other zones are converted
        naive = times[4].replace(tzinfo=None)
        assert [e.object_id for e in query_history(session, since=naive).results] == ["4"]
        plus2 = dt.timezone(dt.timedelta(hours=2))
        assert query_history(session, until=times[2].astimezone(plus2)).count == 2
        # the window combines with the other filters
        assert query_history(session, since=times[0], object_id="3").count == 1
        # an empty or inverted window is an empty page, not an error
        assert query_history(session, since=times[2], until=times[2]).results == []
        assert query_history(session, since=times[3], until=times[1]).count == 0
        # bounds beyond the years 1 to 9999 once in UTC are the representable extremes
        east, west = dt.timezone(dt.timedelta(hours=5)), dt.timezone(dt.timedelta(hours=-5))
        earliest = dt.datetime(1, 1, 1, 2, tzinfo=east)
        latest = dt.datetime(9999, 12, 31, 23, tzinfo=west)
        assert query_history(session, since=earliest, until=latest).count == 5
        assert query_history(session, until=earliest).count == 0
        assert query_history(session, since=latest).count == 0


def test_order_is_timestamp_then_id_both_descending(engine: Engine) -> None:
    """A later timestamp wins over a larger id; equal timestamps fall back to the id."""
    t1 = dt.datetime(2025, 3, 26, 13, 0, tzinfo=dt.timezone.utc)
    t2 = t1 + dt.timedelta(microseconds=1)
    small, large = sorted(str(ULID()) for _ in range(2))
    a, b, c = new_ulids(t1, 3)
    insert_entries(
        engine,
        [
            {"id": large, "timestamp": t1, "object_id": "older-time-larger-id"},
            {"id": small, "timestamp": t2, "object_id": "newer-time-smaller-id"},
            {"id": b, "timestamp": t1, "object_id": "b"},
            {"id": a, "timestamp": t1, "object_id": "a"},
            {"id": c, "timestamp": t1, "object_id": "c"},
        ],
    )
    with Session(engine) as session:
        page = query_history(session)
    assert [e.object_id for e in page.results] == [
        "newer-time-smaller-id", "older-time-larger-id", "c", "b", "a",
    ]  # fmt: skip


def test_entries_of_one_flush_share_a_timestamp_and_come_by_id(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with auditlog.audit_context(tenant_id=T1), Session_.begin() as session:
        session.add_all([Customer(id=i, name=f"c{i}") for i in range(1, 6)])
    with Session_() as session:
        page = query_history(session)
    assert len({e.timestamp for e in page.results}) == 1
    assert ids(page) == sorted(ids(page), reverse=True)
    assert ids(page) == newest_first(engine)


# --- page numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (1, (45, 3, 1, False, True, None, 2, 20)),
        (2, (45, 3, 2, True, True, 1, 3, 20)),
        (3, (45, 3, 3, True, False, 2, None, 5)),
        (4, (45, 3, 4, True, False, 3, None, 0)),  # beyond the last page: empty, not an error
        (99, (45, 3, 99, True, False, 98, None, 0)),
    ],
)
def test_page_number_fields(engine: Engine, page: int, expected: tuple[Any, ...]) -> None:
    many_entries(engine, 45)
    with Session(engine) as session:
        result = query_history(session, page=page, page_size=20)
    assert (
        result.count, result.total_pages, result.current_page, result.has_previous,
        result.has_next, result.previous_page, result.next_page, len(result.results),
    ) == expected  # fmt: skip


def test_an_empty_history_is_one_empty_page(engine: Engine) -> None:
    with Session(engine) as session:
        page = query_history(session, tenant_id="nobody")
    assert page.model_dump(mode="json") == {
        "count": 0,
        "total_pages": 1,
        "current_page": 1,
        "has_previous": False,
        "has_next": False,
        "previous_page": None,
        "next_page": None,
        "results": [],
        "next_cursor": None,
        "count_exact": True,
    }


def test_pages_together_are_the_whole_history_once(engine: Engine) -> None:
    many_entries(engine, 45)
    expected = newest_first(engine)
    with Session(engine) as session:
        seen = [
            i for p in (1, 2, 3, 4, 5) for i in ids(query_history(session, page=p, page_size=9))
        ]
        assert seen == expected
        assert ids(query_history(session, page_size=45)) == expected
        assert query_history(session, page_size=45).total_pages == 1


@pytest.mark.parametrize("page_size", [1, 1000])
def test_page_size_bounds_are_accepted(engine: Engine, page_size: int) -> None:
    many_entries(engine, 3)
    with Session(engine) as session:
        page = query_history(session, page_size=page_size)
    assert len(page.results) == min(3, page_size)
    assert page.total_pages == (3 if page_size == 1 else 1)


def test_tenant_and_user_ids_match_exactly_never_by_case_or_trailing_space(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """MariaDB's default collation would let tenant 'ACME' read tenant 'acme': not here."""
    for tenant in ("acme", "ACME", "acme "):
        with auditlog.audit_context(tenant_id=tenant, user_id=tenant), Session_.begin() as session:
            session.add(Customer(name=tenant))
    with Session(engine) as session:
        for tenant in ("acme", "ACME", "acme "):
            page = query_history(session, tenant_id=tenant)
            assert [e.tenant_id for e in page.results] == [tenant]
            assert query_history(session, user_id=tenant).count == 1
        assert query_history(session, tenant_id="Acme").count == 0


def test_an_ipv4_mapped_address_matches_its_ipv4_form(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with auditlog.audit_context(ip_address="::ffff:192.0.2.7"), Session_.begin() as session:
        session.add(Customer(name="mapped"))
    with Session(engine) as session:
        assert query_history(session, ip_address="192.0.2.7").count == 1
        assert query_history(session, ip_address="::ffff:192.0.2.7").count == 1


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "argument", "words"),
    [
        ({"action_type": "remove"}, "action_type", "unknown action type 'remove'"),
        ({"action_type": "create,oops"}, "action_type", "'oops'"),
        ({"action_type": 3}, "action_type", "action type"),
        ({"page": 0}, "page", "greater than or equal to 1"),
        ({"page": -1}, "page", "greater than or equal to 1"),
        ({"page": "two"}, "page", "integer"),
        ({"page": True}, "page", "boolean"),
        ({"page_size": 0}, "page_size", "greater than or equal to 1"),
        ({"page_size": 1001}, "page_size", "less than or equal to 1000"),
        ({"ip_address": "10.0.0.256"}, "ip_address", "not a valid IPv4 or IPv6 address"),
        ({"ip_address": "2001:db8:::1"}, "ip_address", "not a valid IPv4 or IPv6 address"),
        ({"ip_address": 1234}, "ip_address", "IP address"),
        ({"content_type": int}, "content_type", "not a mapped class"),
        ({"content_type": True}, "content_type", "boolean"),
        ({"object_id": ()}, "object_id", "composite key"),
        ({"object_id": {"id": 1}}, "object_id", "string"),
        ({"user_id": ["u1"]}, "user_id", "string"),
        ({"since": "yesterday"}, "since", "datetime"),
        ({"tenant": T1}, "tenant", "unknown argument"),
        ({"page": 2**31}, "page", "less than or equal to 2147483647"),
        ({"content_type": 2**63}, "content_type", "less than or equal to 2147483647"),
        ({"tenant_id": "a\x00b"}, "tenant_id", "NUL"),
        ({"user_id": "\x00"}, "user_id", "NUL"),
        ({"object_id": "1\x00"}, "object_id", "NUL"),
    ],
)
def test_a_bad_argument_raises_a_value_error_naming_it(
    engine: Engine, arguments: dict[str, Any], argument: str, words: str
) -> None:
    with Session(engine) as session, pytest.raises(InvalidQueryError) as caught:
        query_history(session, **arguments)
    assert isinstance(caught.value, ValueError)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(f"{argument}: ")
    assert words in str(caught.value)


# --- the page's JSON ----------------------------------------------------------------------------


def test_the_page_json_has_the_endpoints_shape(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with (
        auditlog.audit_context(
            tenant_id=T1, user_id="6da08401-b1f7-46ec-9013-2a9d7bc6185c", user_agent="curl/8.5"
        ),
        Session_.begin() as session,
    ):
        session.add(Customer(id=7, tenant_id=T1, name="Sukumar", password="pw"))
    (stored,) = entries(engine)
    with Session_() as session:
        page = query_history(session, action_type="create")
    data = page.model_dump(mode="json")
    entry = data["results"][0]
    assert SEED_TIMESTAMP.match(entry["timestamp"])
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", entry["id"])
    assert data == {
        "count": 1,
        "total_pages": 1,
        "current_page": 1,
        "has_previous": False,
        "has_next": False,
        "previous_page": None,
        "next_page": None,
        "results": [
            {
                "id": stored.id,
                "tenant_id": T1,
                "user_id": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
                "created_by": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
                "action_type": "create",
                "timestamp": stored.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "ip_address": None,
                "user_agent": "curl/8.5",
                "object_id": "7",
                "before_state": None,
                "after_state": {
                    "id": 7,
                    "tenant_id": T1,
                    "name": "Sukumar",
                    "email": None,
                    "password": auditlog.MASKED,
                    "notes": None,
                    "loans": [],
                },
                "content_type": stored.content_type,
                # added to the documented page: the model, and what a reader needs next
                "model": "tests.models.Customer",
                "model_label": "Customer",
                "changed_fields": None,
                "diff": None,
                "transaction_id": stored.transaction_id,
                "extra": None,
            }
        ],
        "next_cursor": None,
        "count_exact": True,
    }


DOCUMENTED_KEYS = {
    "id", "tenant_id", "user_id", "created_by", "action_type", "timestamp", "ip_address",
    "user_agent", "object_id", "before_state", "after_state", "content_type",
}  # fmt: skip


def test_the_entry_json_matches_the_documented_example_field_for_field(engine: Engine) -> None:
    """A row with the documented example's values gives back the example's JSON."""
    at = dt.datetime(2025, 3, 26, 13, 53, 2, 869449, tzinfo=dt.timezone.utc)
    on_the_second = dt.datetime(2025, 3, 26, 13, 53, 1, tzinfo=dt.timezone.utc)
    ctype = content_type_id(engine, "tests.manual")
    after = {"id": "01JQ8RRBB2XRSVTCG11Y6JKCKH", "name": "Sukumar", "refs": {}, "tags": ["string"]}
    insert_entries(
        engine,
        [
            {
                "id": "01JQ8RREEM71MEZJXNECGE0ATA",
                "timestamp": at,
                "tenant_id": T1,
                "user_id": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
                "object_id": "01JQ8RRBB2XRSVTCG11Y6JKCKH",
                "after_state": after,
            },
            {"id": "01JQ8RRDBK0000000000000000", "timestamp": on_the_second, "ip_address": "::1"},
        ],
    )
    with Session(engine) as session:
        results = query_history(session).model_dump(mode="json")["results"]
    documented = {k: v for k, v in results[0].items() if k in DOCUMENTED_KEYS}
    assert documented == {
        "id": "01JQ8RREEM71MEZJXNECGE0ATA",
        "tenant_id": T1,
        "user_id": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
        "created_by": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
        "action_type": "create",
        "timestamp": "2025-03-26T13:53:02.869449Z",
        "ip_address": None,
        "user_agent": "",
        "object_id": "01JQ8RRBB2XRSVTCG11Y6JKCKH",
        "before_state": None,
        "after_state": after,
        "content_type": ctype,
    }
    # a whole second still has six fraction digits, as in the documented example
    assert results[1]["timestamp"] == "2025-03-26T13:53:01.000000Z"
    assert results[1]["ip_address"] == "::1"
    assert results[1]["created_by"] == results[1]["user_id"] == "u1"


# --- cursor mode --------------------------------------------------------------------------------


def walk(session: Session, **filters: Any) -> Iterator[Any]:
    """Every page of a cursor walk, oldest last."""
    cursor = None
    while True:
        page = query_history_cursor(session, cursor=cursor, **filters)
        yield page
        if not page.has_next:
            return
        cursor = page.next_cursor


def test_cursor_pages_walk_the_whole_history_once(engine: Engine) -> None:
    many_entries(engine, 45)
    expected = newest_first(engine)
    with Session(engine) as session:
        pages = list(walk(session, page_size=10))
    assert [len(p.results) for p in pages] == [10, 10, 10, 10, 5]
    assert [i for p in pages for i in ids(p)] == expected
    assert [(p.has_previous, p.has_next) for p in pages] == [
        (False, True), (True, True), (True, True), (True, True), (True, False),
    ]  # fmt: skip
    for page in pages:
        assert (page.next_cursor is not None) == page.has_next
        assert (page.previous_cursor is not None) == page.has_previous


def test_previous_cursor_walks_back_to_the_same_pages(engine: Engine) -> None:
    many_entries(engine, 45)
    with Session(engine) as session:
        pages = list(walk(session, page_size=10))
        back = [pages[-1]]
        while back[-1].has_previous:
            back.append(
                query_history_cursor(session, cursor=back[-1].previous_cursor, page_size=10)
            )
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in pages]
    assert back[-1].has_previous is False
    assert back[-1].has_next is True


def test_cursor_pages_split_entries_that_share_a_timestamp(engine: Engine) -> None:
    at = dt.datetime(2025, 3, 26, 13, 0, tzinfo=dt.timezone.utc)
    insert_entries(engine, [{"id": u, "timestamp": at} for u in new_ulids(at, 7)])
    expected = newest_first(engine)
    with Session(engine) as session:
        pages = list(walk(session, page_size=3))
    assert [ids(p) for p in pages] == [expected[0:3], expected[3:6], expected[6:7]]


def test_cursor_pages_stay_put_while_new_entries_arrive(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Page-number pages shift when entries are written between requests; cursor pages do not."""
    with auditlog.audit_context(tenant_id=T1, user_id="u1"), Session_.begin() as session:
        session.add_all([Customer(id=i, tenant_id=T1, name=f"c{i}") for i in range(1, 13)])
    before = newest_first(engine)
    with Session_() as session:
        first = query_history_cursor(session, tenant_id=T1, page_size=5)
        numbered = query_history(session, tenant_id=T1, page_size=5)
    with auditlog.audit_context(tenant_id=T1, user_id="u2"), Session_.begin() as session:
        session.add_all([Customer(id=i, tenant_id=T1, name=f"n{i}") for i in range(20, 23)])
    with Session_() as session:
        second = query_history_cursor(session, tenant_id=T1, page_size=5, cursor=first.next_cursor)
        third = query_history_cursor(session, tenant_id=T1, page_size=5, cursor=second.next_cursor)
        shifted = query_history(session, tenant_id=T1, page_size=5, page=2)
        assert first.previous_cursor is None  # the first page has nothing newer yet
        # the page before the second is the first again, although three entries arrived
        back = query_history_cursor(
            session, tenant_id=T1, page_size=5, cursor=second.previous_cursor
        )
    assert ids(first) + ids(second) + ids(third) == before
    assert third.has_next is False
    assert ids(back) == ids(first)
    assert back.has_previous is True  # the three new entries are newer still
    assert ids(numbered) == before[:5]
    assert ids(shifted) == before[2:7]  # page 2 repeats two entries of page 1


def test_a_cursor_walk_applies_every_filter(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_history(Session_)
    expected = newest_first(engine, tenant_id=T1, user_id="u1")
    with Session_() as session:
        pages = list(walk(session, tenant_id=T1, user_id="u1", page_size=1))
        window = query_history_cursor(session, action_type="create,delete", object_id=2)
    assert [i for p in pages for i in ids(p)] == expected
    assert len(pages) == 4
    assert [e.action_type for e in window.results] == ["delete", "create"]
    assert (window.has_next, window.next_cursor, window.previous_cursor) == (False, None, None)


def test_an_empty_cursor_page_has_no_cursors(engine: Engine) -> None:
    with Session(engine) as session:
        page = query_history_cursor(session, tenant_id="nobody")
    assert page.model_dump(mode="json") == {
        "has_next": False,
        "has_previous": False,
        "next_cursor": None,
        "previous_cursor": None,
        "results": [],
    }


def test_a_cursor_is_opaque_and_url_safe(engine: Engine) -> None:
    many_entries(engine, 4)
    with Session(engine) as session:
        page = query_history_cursor(session, page_size=2)
    assert page.next_cursor is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]+", page.next_cursor)
    last = page.results[-1]
    assert Cursor.decode(page.next_cursor) == Cursor(last.timestamp, last.id, "next")


@pytest.mark.parametrize("garbage", ["x", "not a cursor!", "AAAA", "%%%", "AXAABmEerfMxUgGV0Yw5"])
def test_a_garbage_cursor_raises_naming_cursor(engine: Engine, garbage: str) -> None:
    with Session(engine) as session, pytest.raises(InvalidQueryError) as caught:
        query_history_cursor(session, cursor=garbage)
    assert caught.value.argument == "cursor"


def test_a_tampered_cursor_raises_naming_cursor(engine: Engine) -> None:
    many_entries(engine, 4)
    with Session(engine) as session:
        token = query_history_cursor(session, page_size=2).next_cursor
        assert token is not None
        for i in range(len(token)):
            changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
            with pytest.raises(InvalidQueryError, match=r"^cursor: "):
                query_history_cursor(session, cursor=changed)


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page": 2}, "page"),  # cursor mode has no page numbers
        ({"ip_address": "nope"}, "ip_address"),
        ({"cursor": 12}, "cursor"),
    ],
)
def test_cursor_mode_validates_its_arguments(
    engine: Engine, arguments: dict[str, Any], argument: str
) -> None:
    with Session(engine) as session, pytest.raises(InvalidQueryError) as caught:
        query_history_cursor(session, **arguments)
    assert caught.value.argument == argument


# --- async --------------------------------------------------------------------------------------

# MariaDB through asyncmy: aiomysql 0.3.2 cannot bind bytes (the ULID ids) with PyMySQL >= 1.2.3,
# https://github.com/aio-libs/aiomysql/issues/1080
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mariadb": "mariadb+asyncmy",
}


@pytest.fixture
async def async_maker(engine: Engine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """An async_sessionmaker on the same database as ``engine``, through its async driver."""
    driver = _ASYNC_DRIVERS[engine.dialect.name]
    async_engine = create_async_engine(engine.url.set(drivername=driver))
    maker = async_sessionmaker(async_engine, expire_on_commit=False)
    auditlog.enable(maker)
    yield maker
    await async_engine.dispose()


async def test_async_variants_give_the_same_pages(
    engine: Engine, async_maker: async_sessionmaker[AsyncSession]
) -> None:
    with auditlog.audit_context(tenant_id=T1, user_id="u1", ip_address="2001:db8::7"):
        async with async_maker.begin() as session:
            session.add_all([Customer(id=i, tenant_id=T1, name=f"c{i}") for i in range(1, 6)])
        async with async_maker.begin() as session:
            customer = await session.get(Customer, 3)
            assert customer is not None
            await session.delete(customer)
    expected = newest_first(engine)
    async with async_maker() as session:
        page = await query_history_async(session, tenant_id=T1, page=2, page_size=4)
        first = await query_history_cursor_async(session, ip_address="2001:DB8::7", page_size=4)
        second = await query_history_cursor_async(session, cursor=first.next_cursor, page_size=4)
        deleted = await query_history_async(session, action_type=["delete"], object_id=3)
        with pytest.raises(InvalidQueryError, match=r"^page_size: "):
            await query_history_async(session, page_size=1001)
        with pytest.raises(InvalidQueryError, match=r"^cursor: "):
            await query_history_cursor_async(session, cursor="garbage")
    with Session(engine) as sync_session:
        assert page == query_history(sync_session, tenant_id=T1, page=2, page_size=4)
    assert (page.count, page.current_page, page.previous_page, page.next_page) == (6, 2, 1, None)
    assert ids(page) == expected[4:]
    assert ids(first) + ids(second) == expected
    assert (first.has_next, second.has_next, second.has_previous) == (True, False, True)
    assert [(e.action_type, e.user_id, e.ip_address) for e in deleted.results] == [
        ("delete", "u1", "2001:db8::7")
    ]


# --- rows auditlog did not write ----------------------------------------------------------------


def test_rows_not_in_the_written_form_are_served_repaired_not_failing_the_page(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A trigger or a migration may write what auditlog never does."""
    at = dt.datetime(2025, 3, 26, 13, 0, tzinfo=dt.timezone.utc)
    good, array = new_ulids(at, 2)
    insert_entries(
        engine,
        [
            {"id": good, "timestamp": at},
            {"id": array, "timestamp": at, "after_state": [1, 2], "before_state": "text"},
        ],
    )
    if engine.dialect.name != "postgresql":  # a uuid column holds nothing but 16 bytes
        with engine.begin() as conn:
            row = conn.execute(sa.select(AuditLog.__table__).where(AuditLog.id == good)).one()
            conn.execute(
                sa.insert(AuditLog.__table__).values(
                    {**row._mapping, "id": sa.literal_column("'not-a-ulid'"), "object_id": "odd"}
                )
            )
    with Session(engine) as session, caplog.at_level("WARNING", logger="auditlog.query"):
        page = query_history(session, tenant_id=T1)
    by_object = {e.object_id: e for e in page.results}
    assert len(page.results) == page.count
    repaired = next(e for e in page.results if e.id == str(ULID.from_bytes(array)))
    assert repaired.after_state == {"value": [1, 2]}
    assert repaired.before_state == {"value": "text"}
    assert "not in the form auditlog writes" in caplog.text
    if engine.dialect.name != "postgresql":
        assert by_object["odd"].id == "not-a-ulid"


def test_a_row_whose_json_text_is_not_json_is_left_out_not_failing_the_page(
    engine: Engine, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite and MariaDB keep JSON as text: something else may store text that is not JSON."""
    if backend == "postgresql":
        pytest.skip("jsonb refuses text that is not JSON when it is written")
    at = dt.datetime(2025, 3, 26, 13, 0, tzinfo=dt.timezone.utc)
    good, broken = new_ulids(at, 2)
    insert_entries(engine, [{"id": good, "timestamp": at}, {"id": broken, "timestamp": at}])
    with engine.begin() as conn:
        if backend == "mariadb":  # its JSON column checks what is written: lift the check
            conn.exec_driver_sql("SET SESSION check_constraint_checks = 0")
        conn.execute(
            sa.update(AuditLog.__table__)
            .where(AuditLog.id == broken)
            .values(after_state=sa.type_coerce("{not json", sa.Text()))
        )
    with Session(engine) as session, caplog.at_level("WARNING", logger="auditlog.query"):
        page = query_history(session, tenant_id=T1)
    assert [e.id for e in page.results] == [str(ULID.from_bytes(good))]
    assert "after_state is not JSON" in caplog.text


# --- readable entries ---------------------------------------------------------------------------


def test_entries_name_their_model_and_show_an_updates_diff(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer, mask={"password"})
    with auditlog.audit_context(reason="ticket-7"), Session_.begin() as session:
        session.add(Customer(id=1, name="Ada", password="a"))
    with Session_.begin() as session:
        customer = session.get_one(Customer, 1)
        customer.name, customer.password = "Ada L.", "b"
    with Session_() as session:
        update, create = query_history(session).results
    assert (update.model, update.model_label) == ("tests.models.Customer", "Customer")
    assert update.changed_fields == ["name", "password"]
    assert update.diff == {"name": ["Ada", "Ada L."], "password": [auditlog.MASKED] * 2}
    assert create.diff is None and create.changed_fields is None
    assert create.extra == {"reason": "ticket-7"}
    assert create.transaction_id != update.transaction_id
    with Session_() as session:
        same = query_history(session, transaction_id=update.transaction_id).results
        assert [e.id for e in same] == [update.id]
        with pytest.raises(InvalidQueryError, match="transaction_id"):
            query_history(session, transaction_id="not-a-ulid")


def test_a_numbered_page_says_where_the_next_one_starts(engine: Engine) -> None:
    many_entries(engine, 5)
    with Session(engine) as session:
        first = query_history(session, page_size=2)
        assert first.next_cursor is not None
        rest = query_history_cursor(session, cursor=first.next_cursor, page_size=10)
        everything = query_history(session, page_size=10)
    assert [e.id for e in rest.results] == [e.id for e in everything.results[2:]]


def test_past_count_limit_the_count_is_an_estimate_and_paging_stays_exact(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Counting stops past ``count_limit``: ``count`` is then the planner's estimate (SQLite
    has none and counts exactly), but every page holds the right entries, ``has_next`` is
    exact, and the last page knows the count."""
    with auditlog.audit_context(tenant_id=T1, user_id="u1"), Session_.begin() as session:
        session.add_all([Customer(id=i, tenant_id=T1, name=f"c{i}") for i in range(1, 24)])
    expected = newest_first(engine)
    estimating = engine.dialect.name != "sqlite"
    with Session_() as session:
        pages = [query_history(session, page=n, page_size=10, count_limit=5) for n in (1, 2, 3)]
        beyond = query_history(session, page=4, page_size=10, count_limit=5)
        exact = query_history(session, page=1, page_size=10)
    assert [i for page in pages for i in ids(page)] == expected  # 23 entries: 10, 10, 3
    assert [(p.has_next, p.next_cursor is not None) for p in pages] == [
        (True, True), (True, True), (False, False),
    ]  # fmt: skip
    assert [p.count_exact for p in pages] == [not estimating, not estimating, True]
    assert pages[2].count == exact.count == 23 and exact.count_exact
    for page in pages[:2]:
        assert page.count > 5 and page.total_pages >= page.current_page + 1
    assert beyond.results == [] and not beyond.has_next
    assert beyond.count <= 30 and beyond.total_pages <= 3
    with Session_() as session:
        assert query_history(session, count_limit=None).count == 23
        with pytest.raises(InvalidQueryError, match="count_limit"):
            query_history(session, count_limit=-1)
