"""parse_mime against realistic client output, html_to_text, and robustness."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.ticket import Attachment
from services.intake.html_text import html_to_text
from services.intake.mime import ForwardedMessage, ParsedEmail, parse_mime
from services.runtime.errors import PermanentError

EMAILS = Path(__file__).resolve().parents[1] / "fixtures" / "emails"
CET = timezone(timedelta(hours=1))


def load(name: str) -> ParsedEmail:
    return parse_mime((EMAILS / name).read_bytes())


def test_every_fixture_parses() -> None:
    names = sorted(p.name for p in EMAILS.glob("*.eml"))
    assert len(names) >= 14
    for name in names:
        assert load(name).from_address.endswith("@acme.example"), name


# --- client output ------------------------------------------------------------------------


def test_outlook_windows_1252_quoted_printable() -> None:
    mail = load("outlook_cp1252_qp.eml")
    assert mail.from_address == "ana.ruiz@acme.example"
    assert mail.from_name == "Ana Ruiz"
    assert mail.subject == "Invoice shows Premium Support twice"
    assert (
        "shows \u201cPremium Support\u201d twice \u2013 we were charged \u20ac1,250.00" in mail.text
    )
    assert "Friday\u2019s payment run?" in mail.text
    assert mail.html is not None and "\u20ac625.00" in mail.html
    assert "MsoNormal" not in mail.text
    assert mail.language == "en-US"
    assert mail.date == datetime(2026, 11, 27, 8, 58, 37, tzinfo=UTC)
    assert mail.message_id.startswith("<AM9PR04MB8451C0F2A7D3E55B1E9A4C21D1E52@")
    assert mail.attachments == []
    assert mail.forwarded is None


def test_gmail_base64_utf8_with_emoji() -> None:
    mail = load("gmail_utf8_base64_emoji.eml")
    assert mail.subject == "Dashboard down again \U0001f525"
    assert "down again \U0001f525 \u2014 nobody can export reports since 10:15 CET \U0001f61e" in (
        mail.text
    )
    assert "\r" not in mail.text
    assert mail.date == datetime(2026, 11, 27, 9, 58, 27, tzinfo=CET)
    assert mail.message_id == "<CAF7qn6HkQv5vQv1tE3y0fE6t4xZp=vG_3m2YQ2jLw@mail.gmail.example>"


def test_apple_mail_pdf_attachment_is_metadata_only() -> None:
    mail = load("apple_pdf_attachment.eml")
    assert mail.attachments == [
        Attachment(filename="INV-2026-11-0042.pdf", content_type="application/pdf", size=1377)
    ]
    assert mail.text.startswith("Hello,\n\nThe attached invoice INV-2026-11-0042 charges 21% VAT")
    assert "%PDF" not in mail.text and "JVBER" not in mail.text
    assert mail.html is None
    assert mail.subject == "Wrong VAT on invoice INV-2026-11-0042"


def test_html_only_body_becomes_readable_text() -> None:
    mail = load("html_only_table.eml")
    assert mail.html is not None and "<table" in mail.html
    assert mail.from_name == "Jansen, Bo"
    assert 'Acme CRM & your platform fails with "Error 502" <Bad Gateway>.' in mail.text
    assert "Café branch" in mail.text
    assert "Region | Status | Since\nEU-West | Down | 09:40\nUS-East | Degraded | 09:55" in (
        mail.text
    )
    assert "trackOpen" not in mail.text and "Incident report" not in mail.text
    assert "padding" not in mail.text


def test_iso_8859_1_body_and_encoded_word_headers() -> None:
    mail = load("latin1_encoded_words.eml")
    assert mail.subject == "Problème de connexion à la console"
    assert mail.from_name == "Zoë Dupré"
    assert mail.from_address == "zoe.dupre@acme.example"
    assert "Je n'arrive pas à me connecter depuis ce matin, l'écran reste bloqué." in mail.text
    assert "Merci de votre aide très rapide." in mail.text
    assert mail.language == "fr"


def test_gmail_inline_forward() -> None:
    mail = load("gmail_inline_forward.eml")
    assert mail.subject == "Fwd: Login outage"
    assert mail.from_address == "bo@acme.example"
    assert mail.forwarded == ForwardedMessage(
        from_address="ana@acme.example",
        subject="Login outage",
        date=datetime(2026, 11, 27, 9, 58, tzinfo=UTC),  # Gmail prints no zone
    )
    assert "Nobody on our team can log in since 9:50." in mail.text
    assert mail.attachments == []


def test_apple_mail_inline_forward() -> None:
    mail = load("apple_inline_forward.eml")
    assert mail.forwarded == ForwardedMessage(
        from_address="ana@acme.example",
        subject="Login outage",
        date=datetime(2026, 11, 27, 9, 58, 2, tzinfo=CET),
    )


def test_outlook_forward_as_attached_message() -> None:
    mail = load("outlook_forward_attached.eml")
    assert mail.subject == "FW: Login outage"
    assert mail.text == "Forwarding Ana's mail, please treat as urgent.\n\nBo"
    assert "Session expired" not in mail.text  # the attached mail is not the body
    assert mail.forwarded == ForwardedMessage(
        from_address="ana@acme.example",
        subject="Login outage",
        date=datetime(2026, 11, 27, 9, 58, 2, tzinfo=CET),
    )
    [attached] = mail.attachments
    assert (attached.filename, attached.content_type) == (None, "message/rfc822")
    # The re-serialised size of the 572-byte attached mail (it writes "X-MS-Has-Attach: ").
    assert abs(attached.size - 572) <= 2


def test_reply_thread_ids_in_order_and_quote_is_not_a_forward() -> None:
    mail = load("reply_thread.eml")
    assert mail.in_reply_to == "<reply-7f3a9c@support.example>"
    assert mail.references == [
        "<AM9PR04MB8451000111@AM9PR04MB8451.eurprd04.prod.outlook.example>",
        "<reply-7f3a9c@support.example>",
    ]
    assert mail.recipients == ["premium@support.example", "bo@acme.example"]
    assert mail.forwarded is None  # "From: ... Sent: ..." under a RE: subject is a quote
    assert mail.text.startswith("The job is still stuck at 42%")


def test_plus_addressing_gives_the_portal() -> None:
    mail = load("plus_address.eml")
    assert mail.portal_id == 4411
    assert mail.recipients == ["premium+4411@support.example"]
    assert mail.business_critical is False


def test_portal_header_and_business_critical() -> None:
    mail = load("portal_header_critical.eml")
    assert mail.portal_id == 4411
    assert mail.business_critical is True
    assert mail.from_address == "ana@acme.example"
    assert mail.text == "Nobody on our team can log in since 9:50. Production is blocked."


def test_inline_image_in_multipart_related() -> None:
    mail = load("inline_image_related.eml")
    assert mail.attachments == [
        Attachment(filename="image001.png", content_type="image/png", size=425)
    ]
    assert mail.text == (
        "After login we see this screen:\n\n[cid:image001.png@01DB4F2A.6C3E8B10]\n\nBo"
    )
    assert mail.html is not None and 'src="cid:image001.png@01DB4F2A.6C3E8B10"' in mail.html


def test_ios_format_flowed_is_unwrapped() -> None:
    mail = load("ios_flowed.eml")
    assert mail.text.startswith(
        "Hi, the mobile app crashes every time I open the approvals tab on my iPhone. It "
        "started after the update this morning and the whole finance team is affected.\n"
        "From what I can tell it only happens on iOS 18.\n"  # space-stuffing removed
    )
    assert "> On 26 Nov 2026, at 17:02, Premium Support <premium@support.example> wrote:" in (
        mail.text
    )
    assert "-- \nSent from my iPhone" in mail.text  # the signature separator is not flowed


def test_missing_message_id_is_synthesized_deterministically_and_date_is_none() -> None:
    raw = (EMAILS / "no_message_id_no_date.eml").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:32]
    first, second = parse_mime(raw), parse_mime(raw)
    assert first.message_id == second.message_id == f"<sha256-{digest}@intake.invalid>"
    assert first.date is None
    assert first.subject == "Nightly export failed (exit code 3)"
    assert parse_mime(raw + b"\n").message_id != first.message_id


def test_german_mail_with_content_language() -> None:
    mail = load("german_content_language.eml")
    assert mail.language == "de-DE"
    assert mail.subject == "Anmeldung nicht möglich \u2013 dringend"
    assert mail.from_name == "Jörg Müller"
    assert mail.from_address == "joerg.mueller@acme.example"
    assert "Die Fehlermeldung lautet „Ungültige Sitzung“." in mail.text
    assert mail.text.endswith("Viele Grüße\nJörg Müller")


# --- smaller hand-made messages -----------------------------------------------------------


def mail(headers: str, body: bytes = b"Hello\n") -> bytes:
    return headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def test_unknown_charset_falls_back_instead_of_raising() -> None:
    raw = mail(
        "From: a@acme.example\nContent-Type: text/plain; charset=x-no-such-charset",
        "Gr\u00fc\u00dfe".encode("latin-1"),
    )
    assert parse_mime(raw).text == "Grüße"


def test_mislabelled_charsets_are_decoded_sensibly() -> None:
    utf8_as_ascii = mail(
        "From: a@acme.example\nContent-Type: text/plain; charset=us-ascii", "café €".encode()
    )
    assert parse_mime(utf8_as_ascii).text == "café €"
    cp1252_as_latin1 = mail(
        "From: a@acme.example\nContent-Type: text/plain; charset=iso-8859-1",
        "\u201cquoted\u201d \u20ac5".encode("cp1252"),
    )
    assert parse_mime(cp1252_as_latin1).text == "\u201cquoted\u201d \u20ac5"


def test_headers_tolerate_defects() -> None:
    raw = mail(
        "From: Ana <ANA@ACME.EXAMPLE>\n"
        "To: broken <<>>, bo@acme.example\n"
        "Subject: =?utf-8?Q?unterminated\n"
        "Date: not a date\n"
        "Message-ID: <abc@x.example> (comment)\n"
        "In-Reply-To: parent@x.example\n"
        "X-Portal-Id: abc\n"
        "X-Business-Critical: TRUE\n"
        "Cc: premium+4411@support.example"
    )
    parsed = parse_mime(raw)
    assert parsed.from_address == "ana@acme.example"
    assert parsed.subject == "=?utf-8?Q?unterminated"
    assert parsed.date is None
    assert parsed.message_id == "<abc@x.example>"
    assert parsed.in_reply_to == "parent@x.example"
    assert parsed.portal_id == 4411  # a bad X-Portal-Id falls back to plus-addressing
    assert parsed.business_critical is True
    assert "bo@acme.example" in parsed.recipients


def test_naive_date_is_read_as_utc() -> None:
    parsed = parse_mime(mail("From: a@acme.example\nDate: Thu, 27 Nov 2026 09:58:02 -0000"))
    assert parsed.date == datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)


def test_raw_utf8_in_headers() -> None:
    raw = "From: Jörg <j@acme.example>\r\nSubject: Grüße aus Köln\r\n\r\nx".encode()
    parsed = parse_mime(raw)
    assert (parsed.from_name, parsed.subject) == ("Jörg", "Grüße aus Köln")


def test_outlook_original_message_block_under_fw_subject_is_a_forward() -> None:
    body = (
        b"See below.\r\n\r\n-----Original Message-----\r\n"
        b"From: Ana Ruiz [mailto:ana@acme.example]\r\n"
        b"Sent: Thursday, November 27, 2026 9:58 AM\r\nTo: Bo\r\nSubject: Login outage\r\n\r\nhi"
    )
    parsed = parse_mime(mail("From: bo@acme.example\nSubject: FW: Login outage", body))
    assert parsed.forwarded == ForwardedMessage(
        "ana@acme.example", "Login outage", datetime(2026, 11, 27, 9, 58, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "empty message"),
        (b" \r\n\r\n", "empty message"),
        (b"\x00\x01\x02\xff\xfe garbage", "not a MIME message: no headers"),
        (b"just some text\nwithout headers\n", "not a MIME message: no headers"),
        (b"Subject: hi\r\nTo: bo@acme.example\r\n\r\nbody", "no From header"),
        (b"From: foo\r\n\r\nbody", "From header has no address: 'foo'"),
        (b"From:\r\n\r\nbody", "From header is empty"),
    ],
)
def test_malformed_input_is_a_permanent_error(raw: bytes, detail: str) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_mime(raw)
    assert caught.value.reason == "invalid_mime"
    assert caught.value.detail == detail


def test_deeply_nested_multipart_is_rejected() -> None:
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(60)
    )
    with pytest.raises(PermanentError) as caught:
        parse_mime(b"From: a@acme.example\r\n" + head.encode() + b"\r\nx")
    assert caught.value.reason == "invalid_mime"


# --- html_to_text -------------------------------------------------------------------------


def test_html_to_text_structure() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<h1>Status&nbsp;update</h1><p>A &amp; B &lt;c&gt; &euro;5 &#8217;</p>"
        "<ul><li>one</li><li>two</li></ul>line<br>break<div>block</div>"
        "<script>alert(1)</script><p>   lots    of   space </p><br><br><br><br><p>end</p>"
        "</body></html>"
    )
    assert html_to_text(html) == (
        "Status update\n\nA & B <c> €5 \u2019\n\n- one\n- two\nline\nbreak\nblock\n\n"
        "lots of space\n\nend"
    )


def test_html_to_text_unclosed_head_and_odd_markup() -> None:
    assert html_to_text("<head><title>x</title><p>body text") == "body text"
    assert html_to_text("<![if !supportLists]>x<![endif]> &bogus; <a href='y'>z</a>") == (
        "x &bogus; z"
    )
    assert html_to_text("") == ""
    assert html_to_text("<") == "<"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_html_to_text_never_raises(text: str) -> None:
    assert isinstance(html_to_text(text), str)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<p>",
                "</p>",
                "<script>",
                "</script>",
                "<![",
                "<!--",
                "&",
                "<br/>",
                "<li>",
                "x",
                "<td>",
                "<pre>",
                "</pre>",
                "<head>",
                "<",
            ]
        ),
        max_size=30,
    )
)
def test_html_to_text_never_raises_on_tag_soup(pieces: list[str]) -> None:
    assert isinstance(html_to_text("".join(pieces)), str)


# --- properties ---------------------------------------------------------------------------


def parse_or_permanent(raw: bytes) -> None:
    try:
        result = parse_mime(raw)
    except PermanentError as exc:
        assert exc.reason == "invalid_mime"
    else:
        assert isinstance(result, ParsedEmail)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_parse_or_raise_permanent_error(raw: bytes) -> None:
    parse_or_permanent(raw)


header_names = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
     "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "X-Portal-Id",
     "Delivered-To", "Content-Language", "X-Business-Critical", "MIME-Version"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(header_names, st.text()), max_size=8), st.text())
def test_arbitrary_header_and_body_text_parse_or_raise_permanent_error(
    headers: list[tuple[str, str]], body: str
) -> None:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    parse_or_permanent((head + "\r\n" + body).encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(header_names, st.text()), max_size=8), st.text())
def test_a_valid_from_first_always_parses(headers: list[tuple[str, str]], body: str) -> None:
    head = "From: Ana <ana@acme.example>\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers if name != "From")
    parsed = parse_mime((head + "\r\n" + body).encode("utf-8", "surrogatepass"))
    assert parsed.from_address == "ana@acme.example"
