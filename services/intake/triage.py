"""Business-critical signals in a request's text (DESIGN.md section 2).

Hints are attached for the agent with the phrases that matched; they never change a
ticket's severity on their own.
"""

from __future__ import annotations

import functools
import re

from schemas.inbound import Severity
from schemas.ticket import TriageHint

_SIGNALS: list[tuple[str, Severity, str]] = [
    (
        "login_outage",
        "business_critical",
        r"(?:nobody|no one|none of us)[\w\s']{0,30}?(?:can|could|(?:are|is) able to)"
        r"\s+(?:log|sign)\s?in"
        r"|(?:all (?:of )?(?:our )?users|everyone|the whole team|our team|we|all of us)"
        r"[\w\s']{0,30}?(?:can(?:no|')?t|cannot|unable to|not able to)\s+(?:log|sign)\s?in"
        r"|locked out|login (?:is )?(?:down|broken)|(?:log|sign)-?in (?:page )?(?:is )?down",
    ),
    (
        "system_outage",
        "business_critical",
        r"outage|system[- ]wide|(?:site|platform|portal|everything|system) is down"
        r"|down for (?:everyone|all)|blocking (?:our |the )?(?:launch|operations)"
        r"|(?:launch|go-live) is blocked|core operations|can(?:no|')?t reach (?:any|our) tools",
    ),
    (
        "cms_unreachable",
        "business_critical",
        r"(?:cms|content)[\w\s]{0,20}?(?:unreachable|inaccessible|unavailable|not loading)"
        r"|(?:whole|entire) (?:organi[sz]ation|company)[\w\s]{0,30}?(?:cms|content)",
    ),
    (
        "data_loss",
        "business_critical",
        r"data loss|lost (?:all )?(?:our |the )?data|data (?:is|was) (?:gone|deleted|wiped)"
        r"|(?:deleted|wiped) (?:all|every)",
    ),
    (
        "security_breach",
        "business_critical",
        r"security (?:breach|incident)|(?:been|was|were) (?:hacked|compromised)"
        r"|unauthori[sz]ed access|data leak|account takeover",
    ),
    (
        "single_user",
        "standard",
        r"only (?:me|one user|affects me)|just (?:me|one user|my account)|a single user",
    ),
    ("question", "standard", r"how (?:do|can) (?:i|we)|quick question|is it possible to"),
    ("cosmetic", "standard", r"typo|cosmetic|misaligned|alignment|wrong (?:colou?r|font)"),
    ("configuration", "standard", r"configur(?:e|ation)|set up|change (?:a|the|our) setting"),
]
# One pass over the text for all signals: a named group per signal. Matching on the
# lower-cased text is ~3x faster than IGNORECASE; phrases are cut from the original.
# Most requests hold no signal at all, and the scan costs ~100 us on 500 characters,
# so signals are first ruled out by their anchors: groups of phrases such that every
# match of a signal holds one phrase of each group. The first group lists phrases that
# start a word wherever the signal's pattern allows them (after the match's start, a
# space or `\s`); all of them are looked for in one pass (`_word_starts`). Later groups
# are checked only for a signal whose first group was found, as substrings or a
# pattern (whitespace the regex allows as `\s` cannot be listed). Anchors are whole
# phrases where the pattern has literal spaces ("is down", not "down"): prose is full
# of "down", "how", "data" and "log", and each such candidate made the scan try that
# signal's alternatives at every word.
Anchors = tuple[str, ...] | re.Pattern[str]
_ANCHORS: dict[str, tuple[tuple[str, ...], *tuple[Anchors, ...]]] = {
    "login_outage": (
        ("log", "sign", "locked out"),
        re.compile(r"log[\s-]?in|sign[\s-]?in|locked out"),
    ),
    "system_outage": (
        (
            "outage",
            "system-wide",
            "system wide",
            "is down",
            "down for",
            "blocking",
            "is blocked",
            "core operations",
            "can't reach",
            "cant reach",
            "cannot reach",
        ),
    ),
    "cms_unreachable": (
        # "the whole company ... webcms": the pattern lets cms/content end a word there
        ("cms", "content", "whole", "entire"),
        ("unreachable", "inaccessible", "unavailable", "not loading", "whole ", "entire "),
    ),
    "data_loss": (
        ("data loss", "lost", "data is", "data was", "deleted all", "deleted every", "wiped"),
    ),
    "security_breach": (
        (
            "security breach",
            "security incident",
            "hacked",
            "compromised",
            "unauthori",
            "data leak",
            "account takeover",
        ),
    ),
    "single_user": (
        (
            "only me",
            "only one user",
            "only affects me",
            "just me",
            "just one user",
            "just my account",
            "single user",
        ),
    ),
    "question": (("how do", "how can", "quick question", "is it possible to"),),
    "cosmetic": (("typo", "cosmetic", "misaligned", "alignment", "wrong colo", "wrong font"),),
    "configuration": (("configur", "set up", "setting"),),
}
assert set(_ANCHORS) == {name for name, _, _ in _SIGNALS}

# Every byte that is no ASCII word character ([a-z0-9_], upper case lowered) becomes a
# space: in b" " + the text so translated, a word starts exactly after a space, and a
# non-ASCII letter before a phrase only makes it a candidate it may not be (a
# superset: the scan decides). bytes.translate runs at memory speed, and a pattern led
# by a literal space is tried only at spaces: ~5 us for 500 characters, where
# looking for each phrase with `in` took ~20.
_WORDS = b"abcdefghijklmnopqrstuvwxyz0123456789_"
_NOT_WORD_TO_SPACE = bytes(
    c if c in _WORDS else c + 32 if 65 <= c <= 90 else 32 for c in range(256)
)


def _word_form(phrase: str) -> bytes:
    return phrase.encode().translate(_NOT_WORD_TO_SPACE)


def _start_pattern() -> tuple[re.Pattern[bytes], dict[bytes, frozenset[str]]]:
    """One pattern over every first-group phrase, and the signals each match means.

    Phrases sharing a first letter share a branch (the engine then tries one branch
    per space), longest first, so a match is the longest phrase at that word; it also
    stands for every phrase that is a prefix of it. The lookahead consumes nothing: a
    phrase starting inside another ("locked outage") is still found."""
    signals: dict[bytes, set[str]] = {}
    for name, (starts, *_) in _ANCHORS.items():
        for phrase in starts:
            signals.setdefault(_word_form(phrase), set()).add(name)
    by_first: dict[bytes, list[bytes]] = {}
    for form in sorted(signals, key=len, reverse=True):
        by_first.setdefault(form[:1], []).append(form)
    branches = b"|".join(
        re.escape(first) + b"(?:" + b"|".join(re.escape(p[1:]) for p in phrases) + b")"
        for first, phrases in sorted(by_first.items())
    )
    means = {
        phrase: frozenset(
            n for other, names in signals.items() if phrase.startswith(other) for n in names
        )
        for phrase in signals
    }
    return re.compile(b" (?=(" + branches + b"))"), means


_STARTS, _MEANS = _start_pattern()


def _word_starts(lowered: str) -> set[str]:
    """The signals with a phrase of their first anchor group starting a word."""
    found: set[str] = set()
    raw = b" " + lowered.encode("utf-8", "surrogatepass").translate(_NOT_WORD_TO_SPACE)
    for phrase in _STARTS.findall(raw):
        found |= _MEANS[phrase]
    return found


# NOTE: every signal starts at a word boundary: a phrase inside another word ("we" in
# "answer") is no signal, and the engine skips mid-word positions at once instead of
# trying every alternative there (a 500-character text: ~300 -> ~110 us here).
@functools.lru_cache(maxsize=512)
def _scanner(names: tuple[str, ...], ignorecase: bool) -> re.Pattern[str]:
    """One pattern over the given signals, in `_SIGNALS` order (which decides overlaps)."""
    chosen = "|".join(f"(?P<{n}>{p})" for n, _, p in _SIGNALS if n in names)
    return re.compile(r"\b(?:" + chosen + ")", re.IGNORECASE if ignorecase else 0)


_SEVERITY = {name: severity for name, severity, _ in _SIGNALS}
_ANCHOR_LIST = [(name, _ANCHORS[name][1:]) for name, _, _ in _SIGNALS]


def _candidates(lowered: str) -> tuple[str, ...]:
    """The signals whose every anchor group is in the text, in `_SIGNALS` order."""
    started = _word_starts(lowered)
    if not started:
        return ()
    names = []
    for name, groups in _ANCHOR_LIST:
        if name not in started:
            continue
        for group in groups:
            if isinstance(group, re.Pattern):
                if group.search(lowered) is None:
                    break
            elif not any(anchor in lowered for anchor in group):
                break
        else:
            names.append(name)
    return tuple(names)


MAX_PHRASES = 5
# The letters re.IGNORECASE reads as ASCII ones, exactly these four (tests). Folded
# before lower-casing, the text keeps its length ("İ" alone lowers to two characters),
# so "THE PLATFORM İS DOWN" is scanned case-sensitively like any other text, the
# anchors see what the scan sees, and phrases are cut from the original at the same
# offsets.
_TO_ASCII = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def lowered_for_scan(text: str) -> str:
    return (text if text.isascii() else text.translate(_TO_ASCII)).lower()


def triage_hints(*texts: str) -> list[TriageHint]:
    """Every signal found in the texts, with up to MAX_PHRASES distinct matched phrases,
    in the order of `_SIGNALS`."""
    found: dict[str, dict[str, str]] = {}
    text = "\n".join(t for t in texts if t)
    lowered = lowered_for_scan(text)
    names = _candidates(lowered)
    if not names:
        return []
    # Should a character ever change length when lower-cased, spans would not line up.
    same = len(lowered) == len(text)
    matches = _scanner(names, not same).finditer(lowered if same else text)
    for match in matches:
        name = match.lastgroup or ""
        phrase = " ".join(text[match.start() : match.end()].split())
        phrases = found.setdefault(name, {})
        if len(phrases) < MAX_PHRASES:
            phrases.setdefault(phrase.lower(), phrase)
    return [
        TriageHint(signal=name, points_to=_SEVERITY[name], phrases=list(found[name].values()))
        for name, _, _ in _SIGNALS
        if name in found
    ]
