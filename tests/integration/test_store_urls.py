"""Every PostgreSQL URL form the README names opens the same real database, and the
operator's read-only engine there refuses to write."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.common.store_engine import engine_for
from tests.integration.conftest import PG_URL


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_each_postgres_scheme_opens_the_store(scheme: str) -> None:
    url = f"{scheme}://{PG_URL.partition('://')[2]}"
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_a_read_only_postgres_engine_refuses_writes() -> None:
    engine = engine_for(PG_URL.replace("postgresql://", "postgres://"), read_only=True)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.InternalError, match="read-only"):
            conn.execute(sa.text(f"CREATE TABLE never_{uuid.uuid4().hex[:10]} (x int)"))
    finally:
        engine.dispose()
