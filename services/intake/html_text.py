"""Readable plain text from an HTML mail body, with the standard library only."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figure", "footer", "form", "header", "hr", "main", "nav", "ol",
        "section", "table", "tbody", "thead", "tfoot", "ul",
    }
)  # fmt: skip
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre"})
_HEAD_ONLY = frozenset({"title", "meta", "link", "style", "script", "base", "noscript", "template"})
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_TAG = re.compile(r"<[^>]*>")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # open elements whose content is dropped
        self._pre = 0
        self._cells = 0  # cells seen in the current table row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip == ["head"] and tag not in _HEAD_ONLY:
            self._skip.clear()  # body content: a <head> that was never closed ends here
        if tag in _SKIP:
            self._skip.append(tag)
            return
        if self._skip:
            return
        if tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "tr":
            self._cells = 0
            self.parts.append("\n")
        elif tag in ("td", "th"):
            if self._cells:
                self.parts.append(" | ")
            self._cells += 1
        elif tag in _PARAGRAPH:
            if tag == "pre":
                self._pre += 1
            self.parts.append("\n\n")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            return  # a self-closed <script/> holds nothing
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if self._skip:
            return
        if tag in _PARAGRAPH:
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            self.parts.append("\n\n")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.parts.append(data.replace("\r\n", "\n"))
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def _tidy(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(html_source: str) -> str:
    """Turn an HTML body into readable text. Never raises on a str input.

    Drops script/style/head content, breaks lines at block elements, prefixes list
    items with "- ", separates table cells with " | ", unescapes entities, collapses
    runs of spaces and keeps at most one blank line between paragraphs.
    """
    try:
        parser = _TextExtractor()
        parser.feed(html_source)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # html.parser may still trip on pathological markup
        text = html.unescape(_TAG.sub(" ", html_source))
    return _tidy(text)
