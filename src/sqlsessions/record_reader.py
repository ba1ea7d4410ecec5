"""Session documents read from a file as a stream, in bounded memory, each with its line.

A file may hold JSON Lines (one document per line; blank lines ignored), a JSON array of
documents, or one JSON document: a session, or a JSON object mapping keys to sessions (a dump
of a key-value store). The reader holds one record at a time (plus one read chunk), never the
file: a bad record (invalid UTF-8, invalid JSON, too large, nested too deeply) becomes a
`BadRecord` naming its line, and reading goes on with the next one.

Limits (documented in the README):

* a record (a line, an array element, or a whole single document) may be at most
  `MAX_RECORD_CHARS` characters; a longer JSONL line is skipped and reading goes on;
* in a JSON array, an element that is not valid JSON or is too large ends the array (the
  rest of the file cannot be found reliably without it): that is reported and the rest skipped;
* a single multi-line JSON object (a session or a key -> session map) is read whole, so it
  must fit in `MAX_RECORD_CHARS`: use JSON Lines or a JSON array for larger dumps.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

MAX_RECORD_CHARS = 64 * 1024 * 1024
"""The largest record import accepts, in characters (bytes, for ASCII text): 64 MiB."""

READ_CHUNK_BYTES = 64 * 1024

_WHITESPACE = " \t\r\n"
_BOM = "\ufeff"
# Bytes that are not UTF-8 decode (errors="surrogateescape") to U+DC80..U+DCFF, which a valid
# UTF-8 file never yields: finding one in a record's text means the record had a bad byte.
_BAD_BYTE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class Record:
    """One session document read from a file, with the line it starts on."""

    path: str
    line: int
    document: Any


@dataclass(frozen=True)
class BadRecord:
    """Something in a file that is not a session document: where, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class _Unreadable(Exception):
    """A value that could not be decoded; `resumable` when reading may go on after it."""

    def __init__(self, reason: str, *, resumable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resumable = resumable


class RecordReader:
    """Iterate over the session documents of one binary stream.

    `bytes_read` is how far into the stream the reader has read, and `largest_buffer` the most
    text it ever held at once (at most one record plus one read chunk).
    """

    def __init__(
        self,
        source: IO[bytes],
        name: str,
        *,
        max_record_chars: int = MAX_RECORD_CHARS,
        chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self.name = name
        self.max_record_chars = max_record_chars
        self.bytes_read = 0
        self.largest_buffer = 0
        self._source = source
        self._chunk_bytes = chunk_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._text = ""
        self._pos = 0
        self._line = 1
        self._eof = False
        self._json = json.JSONDecoder()

    # --- buffer ------------------------------------------------------------------------

    def _fill(self, at_least: int = 0) -> bool:
        """Read at least one more chunk (or `at_least` bytes); False at the end of the stream."""
        if self._eof:
            return False
        if self._pos:
            self._text = self._text[self._pos :]
            self._pos = 0
        chunk = self._source.read(max(self._chunk_bytes, at_least))
        if not chunk:
            self._eof = True
            self._text += self._decoder.decode(b"", final=True)
            return False
        self.bytes_read += len(chunk)
        self._text += self._decoder.decode(chunk)
        self.largest_buffer = max(self.largest_buffer, len(self._text))
        return True

    def _advance(self, to: int) -> None:
        self._line += self._text.count("\n", self._pos, to)
        self._pos = to

    def _discard_buffer(self) -> None:
        self._advance(len(self._text))

    def _skip_whitespace(self) -> bool:
        """Skip whitespace; False when the stream ends first."""
        while True:
            end = self._pos
            while end < len(self._text) and self._text[end] in _WHITESPACE:
                end += 1
            self._advance(end)
            if self._pos < len(self._text):
                return True
            if not self._fill():
                return False

    def _bad(self, line: int, reason: str) -> BadRecord:
        return BadRecord(self.name, line, reason)

    # --- reading ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record | BadRecord]:
        self._fill()
        if self._text.startswith(_BOM):
            self._pos = 1
        if not self._skip_whitespace():
            return
        first = self._text[self._pos]
        if first == "[":
            yield from self._array()
        elif first == "{" and not self._first_line_is_a_document():
            yield from self._single_document()
        else:
            yield from self._lines()

    def _first_line_is_a_document(self) -> bool:
        """Whether the first line parses on its own (JSON Lines, or a one-line document)."""
        while "\n" not in self._text[self._pos :] and len(self._text) - self._pos <= (
            self.max_record_chars
        ):
            if not self._fill():
                break
        end = self._text.find("\n", self._pos)
        line = self._text[self._pos : end if end >= 0 else len(self._text)]
        if len(line) > self.max_record_chars:
            return False
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            return False
        return True

    def _lines(self) -> Iterator[Record | BadRecord]:
        """JSON Lines: every non-blank line is one document."""
        scanned = self._pos
        while True:
            newline = self._text.find("\n", scanned)
            if newline < 0:
                if len(self._text) - self._pos > self.max_record_chars:
                    yield self._bad(self._line, self._too_large())
                    if not self._skip_rest_of_line():
                        return
                    scanned = self._pos
                    continue
                already_scanned = len(self._text) - self._pos
                if self._fill():
                    scanned = self._pos + already_scanned  # the fill may compact the buffer
                    continue
                if self._pos >= len(self._text):
                    return
                newline = len(self._text)
            line_number = self._line
            text = self._text[self._pos : newline]
            self._advance(min(newline + 1, len(self._text)))
            scanned = self._pos
            if len(text) > self.max_record_chars:
                yield self._bad(line_number, self._too_large())
                continue
            if text.strip(_WHITESPACE):
                yield from self._line_document(line_number, text)

    def _skip_rest_of_line(self) -> bool:
        """Drop text up to the next newline without holding it; False at the end."""
        while True:
            newline = self._text.find("\n", self._pos)
            if newline >= 0:
                self._advance(newline + 1)
                return True
            self._discard_buffer()
            if not self._fill():
                return False

    def _line_document(self, line: int, text: str) -> Iterator[Record | BadRecord]:
        bad_byte = _invalid_utf8(text)
        if bad_byte is not None:
            yield self._bad(line, bad_byte)
            return
        try:
            document = json.loads(text)
        except RecursionError:
            yield self._bad(line, "not valid JSON: nested too deeply")
            return
        except ValueError as exc:
            yield self._bad(line, f"not valid JSON: {exc}")
            return
        yield from self._documents(line, document)

    def _array(self) -> Iterator[Record | BadRecord]:
        """A top-level JSON array: each element is one document."""
        self._advance(self._pos + 1)  # "["
        while True:
            if not self._skip_whitespace():
                yield self._bad(self._line, "the JSON array is not closed ']'")
                return
            if self._text[self._pos] == "]":
                self._advance(self._pos + 1)
                yield from self._trailing()
                return
            line = self._line
            try:
                document = self._value()
            except _Unreadable as exc:
                if not exc.resumable:
                    yield self._bad(line, f"{exc.reason}; the rest of the file is skipped")
                    return
                yield self._bad(line, exc.reason)
            else:
                yield Record(self.name, line, document)
            if not self._skip_whitespace():
                yield self._bad(self._line, "the JSON array is not closed ']'")
                return
            separator = self._text[self._pos]
            if separator == ",":
                self._advance(self._pos + 1)
            elif separator != "]":
                yield self._bad(
                    self._line, "expected ',' or ']' in the JSON array; the rest is skipped"
                )
                return

    def _single_document(self) -> Iterator[Record | BadRecord]:
        """One multi-line JSON object: a session, or a key -> session map."""
        line = self._line
        try:
            document = self._value()
        except _Unreadable as exc:
            if not exc.resumable and self._source.seekable() and not self._too_large_reason(exc):
                yield from self._restart_as_lines()  # not one document: maybe JSON Lines
                return
            yield self._bad(line, exc.reason)
            return
        yield from self._documents(line, document)
        yield from self._trailing()

    def _restart_as_lines(self) -> Iterator[Record | BadRecord]:
        self._source.seek(0)
        self._decoder.reset()
        self._text, self._pos, self._line, self._eof = "", 0, 1, False
        self.bytes_read = 0
        self._fill()
        if self._text.startswith(_BOM):
            self._pos = 1
        yield from self._lines()

    def _too_large_reason(self, exc: _Unreadable) -> bool:
        return exc.reason == self._too_large()

    def _trailing(self) -> Iterator[BadRecord]:
        if self._skip_whitespace():
            yield self._bad(self._line, "unexpected data after the JSON document; skipped")

    def _too_large(self) -> str:
        return f"record larger than {self.max_record_chars} characters; skipped"

    def _value(self) -> Any:
        """Decode the JSON value starting at the read position and move past it."""
        while True:
            held = len(self._text) - self._pos
            try:
                value, end = self._json.raw_decode(self._text, self._pos)
            except RecursionError:
                raise _Unreadable("not valid JSON: nested too deeply", resumable=False) from None
            except ValueError as exc:
                if held > self.max_record_chars:
                    raise _Unreadable(self._too_large(), resumable=False) from None
                if _maybe_incomplete(exc, len(self._text)) and self._fill(held):
                    continue
                raise _Unreadable(f"not valid JSON: {exc}", resumable=False) from None
            if end == len(self._text) and self._fill(held):
                continue  # a number may go on in the next chunk
            text_length = end - self._pos
            bad_byte = _invalid_utf8(self._text[self._pos : end])
            self._advance(end)
            if text_length > self.max_record_chars:
                raise _Unreadable(self._too_large(), resumable=True)
            if bad_byte is not None:
                raise _Unreadable(bad_byte, resumable=True)
            return value

    def _documents(self, line: int, document: Any) -> Iterator[Record]:
        """A document, or each session of a key -> session map (a key-value store dump)."""
        if (
            isinstance(document, dict)
            and document
            and "id" not in document
            and all(isinstance(value, (dict, str)) for value in document.values())
        ):
            for value in document.values():
                yield Record(self.name, line, value)
            return
        yield Record(self.name, line, document)


def _maybe_incomplete(exc: ValueError, length: int) -> bool:
    """Whether more text could turn this decoding error into a value."""
    if not isinstance(exc, json.JSONDecodeError):
        return False  # e.g. an integer with too many digits
    return exc.msg.startswith("Unterminated string") or exc.pos >= length - 8


def _invalid_utf8(text: str) -> str | None:
    """Why `text` (decoded with surrogateescape) was not valid UTF-8, or None if it was."""
    found = _BAD_BYTE.search(text)
    if found is None:
        return None
    byte = ord(found.group()) - 0xDC00
    return f"not valid UTF-8: byte 0x{byte:02x} at character {found.start() + 1} of the record"
