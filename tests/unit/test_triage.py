"""Triage hints: business-critical and standard signals in a request's text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.triage import MAX_PHRASES, triage_hints


def signals(*texts: str) -> dict[str, list[str]]:
    return {hint.signal: hint.phrases for hint in triage_hints(*texts)}


@pytest.mark.parametrize(
    ("text", "signal", "phrases"),
    [
        (
            "Nobody on our team can log in since 9:50",
            "login_outage",
            ["Nobody on our team can log in"],
        ),
        ("No one can log in to the portal", "login_outage", ["No one can log in"]),
        (
            "All of our users can't log in this morning",
            "login_outage",
            ["All of our users can't log in"],
        ),
        (
            "None of us are able to sign in since the update",
            "login_outage",
            ["None of us are able to sign in"],
        ),
        ("Everyone is locked out of the portal since 9:50", "login_outage", ["locked out"]),
        ("The login page is down for us", "login_outage", ["login page is down"]),
        ("We have a full outage, nothing loads", "system_outage", ["outage"]),
        (
            "The whole platform is down and it is blocking our launch tomorrow",
            "system_outage",
            ["platform is down", "blocking our launch"],
        ),
        ("Our go-live is blocked because nothing saves", "system_outage", ["go-live is blocked"]),
        (
            "Our whole organisation cannot reach the CMS content.",
            "cms_unreachable",
            ["whole organisation cannot reach the CMS"],
        ),
        (
            "The CMS is unreachable for the marketing and sales teams",
            "cms_unreachable",
            ["CMS is unreachable"],
        ),
        ("Content is not loading for any editor", "cms_unreachable", ["Content is not loading"]),
        ("We lost all our data after the migration", "data_loss", ["lost all our data"]),
        (
            "The data was deleted overnight and we have data loss in three projects",
            "data_loss",
            ["data was deleted", "data loss"],
        ),
        (
            "We think our account was compromised: unauthorized access from an unknown IP",
            "security_breach",
            ["was compromised", "unauthorized access"],
        ),
        ("There was a security breach last night", "security_breach", ["security breach"]),
    ],
)
def test_business_critical_signals(text: str, signal: str, phrases: list[str]) -> None:
    hints = [h for h in triage_hints(text) if h.signal == signal]

    assert len(hints) == 1, f"{signal} not found in {text!r}"
    assert hints[0].points_to == "business_critical"
    assert hints[0].phrases == phrases


@pytest.mark.parametrize(
    ("text", "signal", "phrases"),
    [
        ("It only affects me, my colleagues are fine", "single_user", ["only affects me"]),
        ("Just my account shows the error", "single_user", ["Just my account"]),
        ("Quick question: how do I export a report?", "question", ["Quick question", "how do I"]),
        ("Is it possible to change the logo?", "question", ["Is it possible to"]),
        (
            "There is a typo on the pricing page and the button is misaligned",
            "cosmetic",
            ["typo", "misaligned"],
        ),
        ("The footer uses the wrong font", "cosmetic", ["wrong font"]),
        ("Please help us configure SSO for our domain", "configuration", ["configure"]),
        (
            "Can you change the setting for session timeout?",
            "configuration",
            ["change the setting"],
        ),
    ],
)
def test_standard_signals(text: str, signal: str, phrases: list[str]) -> None:
    assert [(h.signal, h.points_to, h.phrases) for h in triage_hints(text)] == [
        (signal, "standard", phrases)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, have a nice weekend.",
        "Hello, I would like to update my billing address.",
        "Everyone loves the new dashboard",
        "",
    ],
)
def test_neutral_text_has_no_hints(text: str) -> None:
    assert triage_hints(text) == []


def test_signals_from_subject_and_body_are_combined_and_deduplicated() -> None:
    hints = signals("Outage", "Total OUTAGE since 9:50, we lost all our data")

    assert hints == {"system_outage": ["Outage"], "data_loss": ["lost all our data"]}


def test_mixed_signals_are_all_reported_in_catalogue_order() -> None:
    text = "Quick question: the CMS is unreachable, but it only affects me."

    assert [(h.signal, h.points_to) for h in triage_hints(text)] == [
        ("cms_unreachable", "business_critical"),
        ("single_user", "standard"),
        ("question", "standard"),
    ]


def test_phrases_are_whitespace_normalised_and_capped() -> None:
    text = "typo\n cosmetic   misaligned alignment wrong colour wrong font Typo"
    [hint] = triage_hints(text)

    assert hint.signal == "cosmetic"
    assert len(hint.phrases) == MAX_PHRASES == 5
    assert hint.phrases == ["typo", "cosmetic", "misaligned", "alignment", "wrong colour"]


def test_phrase_spanning_lines_is_collapsed() -> None:
    text = "Nobody on our\nteam can\n   log in"
    assert signals(text)["login_outage"] == ["Nobody on our team can log in"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), max_size=3))
def test_triage_never_raises_on_arbitrary_text(texts: list[str]) -> None:
    hints = triage_hints(*texts)

    collapsed = " ".join("\n".join(texts).split())
    for hint in hints:
        assert hint.points_to in ("business_critical", "standard")
        assert 1 <= len(hint.phrases) <= MAX_PHRASES
        assert all(p and p in collapsed for p in hint.phrases)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # words led by punctuation, a non-ASCII space, a line end or upper case
        ("(OUTAGE) since 9:50", {"system_outage": ["OUTAGE"]}),
        ("«Locked out» of the portal", {"login_outage": ["Locked out"]}),
        ("Status:\u00a0system-wide\nand data\tloss", {"system_outage": ["system-wide"]}),
        ("We\u2019re fine.\nHow do I export?", {"question": ["How do I"]}),
        # cms may end another word in "the whole company ... cms"
        (
            "The entire company relies on our webcms",
            {"cms_unreachable": ["entire company relies on our webcms"]},
        ),
        # a phrase that starts inside the one before it
        ("we are locked outage", {"login_outage": ["locked out"]}),
        # a letter beyond ASCII makes "outage" no word start: the scan agrees
        ("éoutage and çlocked out", {}),
        # the letters IGNORECASE reads as i, s and k are read so everywhere
        ("THE PLATFORM İS DOWN", {"system_outage": ["PLATFORM İS DOWN"]}),
        ("NOBODY CAN LOG İN", {"login_outage": ["NOBODY CAN LOG İN"]}),
        ("İzmir office: \u017fecurity breach", {"security_breach": ["\u017fecurity breach"]}),
        ("QUİCK QUESTİON, a typo", {"question": ["QUİCK QUESTİON"], "cosmetic": ["typo"]}),
    ],
)
def test_word_starts_after_any_non_word_character(
    text: str, expected: dict[str, list[str]]
) -> None:
    assert signals(text) == expected


def test_exactly_four_letters_fold_to_ascii_under_ignorecase() -> None:
    import re
    import string
    import sys

    from services.intake import triage

    letter = re.compile(f"[{string.ascii_lowercase}]", re.IGNORECASE)
    folding = {
        chr(c)
        for c in range(128, sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and letter.fullmatch(chr(c))
    }
    assert folding == {"\u0130", "\u0131", "\u017f", "\u212a"}
    assert all(len(triage.lowered_for_scan(chr(c))) == 1 for c in range(sys.maxunicode + 1))


def test_a_signal_inside_another_word_is_no_signal() -> None:
    assert triage_hints("The unconfigured printer is fine, no blackoutage here.") == []
    assert [h.signal for h in triage_hints("Please configure the printer")] == ["configuration"]


VOCABULARY = (
    "nobody on our team can log in sign locked out the system is down outage data loss "
    "lost all our data security breach hacked only me just how do I quick question typo "
    "configure set up cms content unreachable whole company everyone cannot İstanbul "
    "we were deleted every launch is blocked core operations can't reach our tools"
    # the words of the anchor phrases, alone and in other words
    " login log-in signin design blog system-wide wide for all down is was gone wiped"
    " unavailable inaccessible not loading entire organisation company incident"
    " unauthorized access leak account takeover affects one user my single a can"
    " possible it to wrong colour font misaligned alignment change setting cosmetic"
)
# a phrase for each alternative of each signal, so each anchor is needed by some text
PHRASES = [
    "nobody can log in",
    "no one could sign in",
    "none of us are able to login",
    "all users cannot log in",
    "we are unable to sign in",
    "locked out",
    "login is down",
    "login broken",
    "log-in page is down",
    "signin down",
    "the site is down",
    "platform is down",
    "everything is down",
    "down for everyone",
    "down for all",
    "blocking our launch",
    "blocking operations",
    "go-live is blocked",
    "launch is blocked",
    "cannot reach any tools",
    "cant reach our tools",
    "cms is unreachable",
    "content not loading",
    "content is unavailable",
    "the whole organisation uses the cms",
    "entire company content",
    "lost the data",
    "data is gone",
    "data was wiped",
    "wiped every",
    "been hacked",
    "were compromised",
    "unauthorised access",
    "data leak",
    "only one user",
    "only affects me",
    "just one user",
    "just my account",
    "a single user",
    "how can we",
    "is it possible to",
    "wrong color",
    "wrong font",
    "configuration",
    "change the setting",
    "security incident",
]
# the same words with the letters that fold to ASCII ones (dotted and dotless i, long
# s, the Kelvin sign), and upper case
FOLDED = [p.replace("i", "\u0130").replace("s", "\u017f") for p in PHRASES[::3]]
FOLDED += [p.upper().replace("I", "\u0131").replace("K", "\u212a") for p in PHRASES[1::3]]
WORDS = st.sampled_from([*VOCABULARY.split(), "in", "out", *PHRASES, *FOLDED])
# what the patterns' \s and [- ] allow between words, beside a plain space
SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\t", "-", "  ", "\u00a0"])


def _joined(parts: list[tuple[str, str]]) -> str:
    return "".join(word + sep for word, sep in parts)


@settings(max_examples=500)
@given(st.lists(st.tuples(WORDS, SEPARATORS), max_size=40).map(_joined))
def test_skipping_signals_without_their_words_changes_no_hint(text: str) -> None:
    from services.intake import triage

    everything = tuple(name for name, _, _ in triage._SIGNALS)
    lowered = triage.lowered_for_scan(text)
    assert len(lowered) == len(text)
    full = triage._scanner(everything, False).finditer(lowered)
    expected: dict[str, list[str]] = {}
    for match in full:
        phrase = " ".join(text[match.start() : match.end()].split()).lower()
        phrases = expected.setdefault(match.lastgroup or "", [])
        if phrase not in phrases and len(phrases) < MAX_PHRASES:
            phrases.append(phrase)
    got = {h.signal: [p.lower() for p in h.phrases] for h in triage_hints(text)}
    assert got == expected


# A separator no signal can span: patterns cross only word characters, spaces and "'".
SEPARATOR = " ." * 40 + " "


@settings(max_examples=300)
@given(st.lists(WORDS, max_size=30).map(" ".join), st.lists(WORDS, max_size=30).map(" ".join))
def test_hints_depend_only_on_a_bounded_window_around_each_match(left: str, right: str) -> None:
    # What lies beyond a match's own words (and a gap of at most ~30 characters inside
    # it) never changes whether it matches: text far away neither adds nor removes one.
    combined = set(signals(left + SEPARATOR + right))
    assert combined == set(signals(left)) | set(signals(right))


def _triage_seconds(text: str) -> float:
    import time

    started = time.perf_counter()
    triage_hints("", text)
    return time.perf_counter() - started


@pytest.mark.parametrize(
    "unit",
    [
        "nobody on our team ",  # the lazy gap of login_outage starts at every "nobody"
        "we we we we we we ",  # an alternative that starts at every word
        "a" * 200 + " ",  # one long word: every position inside it is skipped at once
        "system data content log sign ",  # every anchor present: the full scan runs
    ],
)
def test_a_1_mib_body_is_triaged_in_time_linear_in_its_length(unit: str) -> None:
    small = unit * (64 * 1024 // len(unit))
    big = unit * (1024 * 1024 // len(unit))
    t_small = min(_triage_seconds(small) for _ in range(3))
    t_big = _triage_seconds(big)
    # 16x the text: linear is 16x the time; backtracking would be far more. Generous
    # for a shared machine, and an absolute bound for a request that must not stall.
    assert t_big < 48 * t_small + 0.5, (t_small, t_big)
    assert t_big < 10.0
