"""A search snippet as pieces of plain text, some highlighted: no markup from stored text.

The store wraps matched words in `MARK_START`/`MARK_END`. Those strings could also be in the
message itself, so a marker is only taken for a highlight when it cannot be the message's
own text: when the message holds no marker strings (the usual case), every marker is the
store's; otherwise the store's markers are the balanced set whose removal leaves a part of
the message (on PostgreSQL, whose snippets drop HTML tags, with tags ignored). When that
cannot be decided, the snippet is shown verbatim, unhighlighted.
Templates render every piece with autoescaping, so stored text is always shown as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

from sqlsessions.search import MARK_END, MARK_START

ELLIPSIS = "…"
"""What SQLite puts where a snippet cuts the message short."""
MAX_AMBIGUOUS_MARKERS = 12
"""Beyond this many marker strings in a snippet of a message that holds some itself, the
combinations are not tried (2**12 checks at most) and the snippet is shown verbatim."""

_TAG = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"\s+")
_MARKER = re.compile(re.escape(MARK_START) + "|" + re.escape(MARK_END))


@dataclass(frozen=True)
class Piece:
    """A run of snippet text; `highlighted` when the store marked it as matching."""

    text: str
    highlighted: bool = False


def snippet_pieces(snippet: str, content: str | None) -> list[Piece]:
    """`snippet` split at the store's markers; `content` is the matching message's text
    (None when it could not be read: then the snippet is shown verbatim)."""
    markers = [(m.start(), m.end(), m.group() == MARK_START) for m in _MARKER.finditer(snippet)]
    if not markers:
        return [Piece(snippet)] if snippet else []
    everything = frozenset(range(len(markers)))
    if content is not None and _MARKER.search(content) is None:
        if _balanced(markers, everything):
            return _split(snippet, markers, everything)
        return [Piece(_MARKER.sub("", snippet))]
    if content is not None and len(markers) <= MAX_AMBIGUOUS_MARKERS:
        for is_part_of in (_is_part_of, _is_part_of_without_tags):
            for size in range(len(markers), 1, -1):
                readings = [
                    _split(snippet, markers, frozenset(chosen))
                    for chosen in combinations(range(len(markers)), size)
                    if _balanced(markers, frozenset(chosen))
                ]
                readings = [r for r in readings if is_part_of(_text(r), content)]
                if readings:  # the store marks words: the tightest highlight is the likeliest
                    return min(readings, key=lambda r: sum(len(p.text) for p in r if p.highlighted))
    return [Piece(snippet)]


def _text(pieces: list[Piece]) -> str:
    return "".join(piece.text for piece in pieces)


def _balanced(markers: list[tuple[int, int, bool]], chosen: frozenset[int]) -> bool:
    """The chosen markers open and close in turn, ending closed."""
    expect_start = True
    for index, (_, _, is_start) in enumerate(markers):
        if index in chosen:
            if is_start != expect_start:
                return False
            expect_start = not expect_start
    return expect_start


def _is_part_of(text: str, content: str) -> bool:
    return text in content or text.strip(ELLIPSIS) in content


def _is_part_of_without_tags(text: str, content: str) -> bool:
    """PostgreSQL's ts_headline puts a space where the message has an HTML tag."""
    return _untagged(text).strip() in _untagged(content)


def _untagged(text: str) -> str:
    return _SPACES.sub(" ", _TAG.sub(" ", text))


def _split(
    snippet: str, markers: list[tuple[int, int, bool]], chosen: frozenset[int]
) -> list[Piece]:
    pieces: list[Piece] = []
    position, highlighted, run = 0, False, ""
    for index, (start, end, is_start) in enumerate(markers):
        run += snippet[position:start]
        if index in chosen:
            if run:
                pieces.append(Piece(run, highlighted))
            run, highlighted = "", is_start
        else:
            run += snippet[start:end]
        position = end
    run += snippet[position:]
    if run:
        pieces.append(Piece(run, highlighted))
    return pieces
