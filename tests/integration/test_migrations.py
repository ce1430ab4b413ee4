from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from outreach.db.models import Base
from outreach.db.session import current_revision, head_revision, make_engine, upgrade


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("enrollment")}
        assert indexes["ix_enrollment_due"] == ["phase", "next_action_at"]
        uniques = [u["column_names"] for u in inspect(engine).get_unique_constraints("message")]
        assert ["enrollment_id", "step_key"] in uniques
    finally:
        engine.dispose()


def test_the_lead_domain_is_filled_in_for_leads_stored_before_it_existed(database_url: str) -> None:
    import datetime as dt

    from sqlalchemy import text

    engine = make_engine(database_url)
    try:
        upgrade(engine, "0004")
        now = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
        with engine.begin() as conn:
            for email in ("ananya@Acme.example", "ravi@globex.example", "no-at-sign"):
                conn.execute(text("INSERT INTO lead (email, first_name, last_name, company, title, phone, timezone, country, fields, status, created_at, updated_at) VALUES (:e, '', '', '', '', '', '', '', '{}', 'Active', :t, :t)"), {"e": email, "t": now})
        upgrade(engine)
        with engine.connect() as conn:
            domains = dict(conn.execute(text("SELECT email, domain FROM lead")).all())
        assert domains == {"ananya@Acme.example": "acme.example", "ravi@globex.example": "globex.example", "no-at-sign": ""}
        assert "ix_lead_domain" in {ix["name"] for ix in inspect(engine).get_indexes("lead")}
    finally:
        engine.dispose()
