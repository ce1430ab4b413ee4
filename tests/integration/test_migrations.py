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
