"""The pure parts of what the operator tools print: untrusted text as text, one line for
a configuration problem, store URLs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from rich.console import Console

from services.common.store_engine import StoreUrlError, engine_for, sqlite_path
from services.notifier.main import NotifierSettings
from services.operator.literal import literal, printable
from services.operator.reasons import scrub, settings_reason


def test_printable_escapes_controls_and_keeps_markup_as_it_is() -> None:
    text = "[bold]x[/] :warning: \x1b[31mred\x07\x9b \u202eevil\u200b\ttab\nline"
    assert printable(text) == (
        "[bold]x[/] :warning: \\x1b[31mred\\x07\\x9b \\u202eevil\\u200b\\x09tab\\x0aline"
    )
    assert printable(text, lines=True).endswith("\\u200b\ttab\nline")


def test_literal_renders_exactly_what_it_was_given() -> None:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(literal("[/] [red]x[/] :warning:"))
    assert out.getvalue() == "[/] [red]x[/] :warning:\n"


def test_a_missing_variable_is_named_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONCALL_FILE", raising=False)
    monkeypatch.setenv("SMTP_PORT", "twenty-five")
    with pytest.raises(ValidationError) as caught:
        NotifierSettings()
    reason = settings_reason(caught.value)
    assert reason.startswith("configuration: ONCALL_FILE is not set: point it at the on-call")
    assert "SMTP_PORT: Input should be a valid integer" in reason
    assert "twenty-five" not in reason  # a value is never repeated: it may be a secret


def test_scrub_masks_the_password_plain_and_percent_encoded() -> None:
    url = "amqp://ops:p%40ss-w0rd@rabbit:5672//"
    assert scrub("login p@ss-w0rd or p%40ss-w0rd\n refused", url) == "login *** or *** refused"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (None, Path("sla_timer.db")),
        ("clocks.db", Path("clocks.db")),
        ("/var/lib/clocks.db", Path("/var/lib/clocks.db")),
        ("sqlite:///clocks.db", Path("clocks.db")),
        ("sqlite:////var/lib/clocks.db", Path("/var/lib/clocks.db")),
        ("postgres://u@db/sla", None),
        ("postgresql://u@db/sla", None),
        ("postgresql+psycopg://u@db/sla", None),
    ],
)
def test_store_urls(url: str | None, path: Path | None) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["mysql://u@db/sla", "sqlite://clocks.db", "sqlite:///"])
def test_store_urls_that_name_nothing_we_open(url: str) -> None:
    with pytest.raises(StoreUrlError):
        sqlite_path(url)


def test_a_read_only_store_is_never_created_and_never_written(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreUrlError, match="the file does not exist"):
        engine_for(f"sqlite:///{missing}", read_only=True)
    assert not missing.exists()

    writer = engine_for(str(tmp_path / "clocks.db"))
    with writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    writer.dispose()
    reader = engine_for(str(tmp_path / "clocks.db"), read_only=True)
    with reader.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    reader.dispose()
