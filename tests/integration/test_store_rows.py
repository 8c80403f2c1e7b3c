"""Multi-row inserts on both stores: one statement per chunk, conflicts as asked."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.common.store_engine import MULTI_ROW_PARAMS, engine_for, insert_rows

metadata = sa.MetaData()
table = sa.Table(
    "t_rows",
    metadata,
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


def test_rows_go_in_chunks_and_conflicts_follow_the_clause(store_url: str) -> None:
    engine = engine_for(store_url)
    metadata.create_all(engine)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    rows = [{"key": f"k{i}", "value": i} for i in range(1000)]

    def keep(statement: Any) -> Any:
        return statement.on_conflict_do_nothing(index_elements=["key"])

    def replace(statement: Any) -> Any:
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=["key"], set_={"value": excluded.value}
        )

    with engine.begin() as conn:
        insert_rows(conn, insert(table), rows, keep)
    per = MULTI_ROW_PARAMS // 2
    assert len([s for s in statements if "INSERT" in s]) == -(-1000 // per)
    with engine.begin() as conn:
        insert_rows(conn, insert(table), [{"key": "k1", "value": -1}], keep)
        insert_rows(conn, insert(table), [{"key": "k2", "value": -2}], replace)
        insert_rows(conn, insert(table), [])
        values = dict(conn.execute(sa.select(table.c.key, table.c.value)).all())
    assert len(values) == 1000
    assert (values["k1"], values["k2"], values["k999"]) == (1, -2, 999)
    engine.dispose()
