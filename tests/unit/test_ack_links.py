"""The acknowledge link in the notifier's messages (services.notifier.delivery `ack_url`,
services.notifier.render) and the notifier's ACK_* settings."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from services.common.ack_token import AckLinks, verify_token
from services.notifier.decisions import TEAM, Notification
from services.notifier.delivery import ack_url
from services.notifier.main import NotifierSettings, ack_links
from services.notifier.notes import TicketNotes
from services.notifier.oncall import OnCall, parse_oncall
from services.notifier.render import render_chat, render_console, render_email, render_generic
from services.runtime.yaml_files import ConfigFileError

SECRET = "ack-secret-for-unit-tests"
TID = "T-email-0207b44e3d661cc0"
T0 = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
LINKS = AckLinks("https://ack.example", SECRET, timedelta(hours=4))
ONCALL = """\
people:
  - {id: kim, name: Kim, email: kim@support.example}
schedules:
  primary: {timezone: UTC, rotation: [kim], handoff: {weekday: mon, hour: 9}, start: 2026-01-05}
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, people: [kim]}
team_channel: {name: team, console: true}
"""


def page(reason: str = "opened", person: str = "kim", action: str = "notify") -> Notification:
    return Notification.model_validate(
        {
            "ticket_id": TID,
            "reason": reason,
            "level": 1,
            "person": person,
            "channel": "email",
            "action": action,
        }
    )


@pytest.fixture(scope="module")
def oncall() -> OnCall:
    return parse_oncall(ONCALL)


def notes() -> TicketNotes:
    return TicketNotes.model_validate({"ticket_id": TID, "severity": "business_critical"})


def test_a_page_link_names_the_ticket_person_and_notification() -> None:
    n = page()
    url = ack_url(LINKS, n, T0)
    assert url is not None and url.startswith("https://ack.example/ack?t=")
    claim = verify_token(SECRET, parse_qs(urlsplit(url).query)["t"][0], T0)
    assert (claim.ticket_id, claim.person, claim.notification_key) == (
        TID,
        "kim",
        n.notification_key,
    )
    assert verify_token(SECRET, parse_qs(urlsplit(url).query)["t"][0], T0 + timedelta(hours=3))


@pytest.mark.parametrize(
    "n",
    [
        page(person=TEAM),
        page("acknowledged.opened", action="acknowledge"),
        page("resolved.opened", action="resolve"),
        page("undelivered"),
    ],
)
def test_no_link_for_the_team_follow_ups_or_undelivered(n: Notification) -> None:
    assert ack_url(LINKS, n, T0) is None


def test_no_link_without_a_base_url() -> None:
    assert ack_url(None, page(), T0) is None


def test_every_person_channel_carries_the_link(oncall: OnCall) -> None:
    n = page("warning")
    url = ack_url(LINKS, n, T0)
    assert url is not None
    mail = render_email(n, notes(), oncall, T0, url)
    assert f"Acknowledge:     {url}" in mail.text
    assert f'<a href="{html.escape(url)}">Acknowledge this page</a>' in mail.html
    chat = render_chat(n, notes(), oncall, T0, url)
    assert f"<{url}|Acknowledge this page>" in str(chat["blocks"])
    assert render_generic(n, notes(), oncall, T0, url)["acknowledge_url"] == url
    assert url in render_console(n, notes(), oncall, T0, url)
    assert "Acknowledge" not in render_email(n, notes(), oncall, T0).text


def test_base_url_without_secret_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACK_SECRET", raising=False)
    monkeypatch.delenv("ACK_SECRET_FILE", raising=False)
    path = tmp_path / "oncall.yaml"
    path.write_text(ONCALL)
    settings = NotifierSettings(ONCALL_FILE=path, ACK_BASE_URL="https://ack.example")
    with pytest.raises(ConfigFileError, match="ACK_SECRET"):
        ack_links(settings)
    (tmp_path / "secret").write_text(SECRET + "\n")
    monkeypatch.setenv("ACK_SECRET_FILE", str(tmp_path / "secret"))
    links = ack_links(settings)
    assert links is not None and links.secret == SECRET
    assert SECRET not in repr(settings) and SECRET not in repr(links)
    assert ack_links(NotifierSettings(ONCALL_FILE=path)) is None
