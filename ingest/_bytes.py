"""Bytes that are not UTF-8: how every reader turns trace bytes into strings.

A comm is 16 arbitrary bytes (``prctl(PR_SET_NAME)``) and event payloads carry user bytes
(``trace_marker`` text, file names), so a trace may hold anything. The rule, the same in
every text format and in trace.dat (docs/formats.md, "Bytes that are not UTF-8"):

* valid UTF-8 stays as it is (control characters included);
* each byte that is not part of a valid UTF-8 sequence becomes ``\\xNN`` (a backslash, ``x``
  and two lowercase hex digits), e.g. ``b"a\\xffb"`` -> ``a\\xffb``, shown as 6 characters;
* a backslash of the input that is followed by ``x`` and two hex digits becomes ``\\x5c``,
  so that every ``\\xNN`` of a string is one byte of the input and the rule is lossless:
  replacing each ``\\xNN`` by the byte ``NN`` gives the input back (:func:`unescape`).

Nothing else changes; a line never becomes an error because of its bytes. Checking costs
next to nothing on clean input: the readers let the UTF-8 validation of the Arrow/polars
cast they make anyway find the bad blocks, plus one substring search for ``\\x``.
"""

from __future__ import annotations

import re

import numpy as np

_LITERAL = re.compile(rb"\\(?=x[0-9a-fA-F]{2})")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def looks_escaped(raw: bytes) -> bool:
    """Whether ``raw`` holds a ``\\xNN`` of its own, which :func:`escape` must change even
    when ``raw`` is valid UTF-8 (one substring search when it holds none)."""
    return b"\\x" in raw and _LITERAL.search(raw) is not None


def escape(raw: bytes) -> str:
    """``raw`` as a string: valid UTF-8 kept, every other byte as ``\\xNN`` (see above)."""
    if b"\\x" in raw:
        raw = _LITERAL.sub(rb"\\x5c", raw)
    return raw.decode("utf-8", "backslashreplace")


def escape_bytes(raw: bytes) -> bytes:
    """:func:`escape` as UTF-8 bytes: always valid UTF-8, same newlines and line count."""
    return escape(raw).encode("utf-8")


def has_backslash_x(u8: np.ndarray) -> bool:
    """Whether a numpy byte buffer holds ``\\x`` (then :func:`escape` may change it)."""
    if len(u8) < 2:
        return False
    return bool(((u8[:-1] == 0x5C) & (u8[1:] == 0x78)).any())


def unescape(text: str) -> bytes:
    """The input bytes back from an escaped string (the inverse of :func:`escape`).

    >>> unescape(escape(b"a\\xff\\\\x41\\xe2\\x82"))
    b'a\\xff\\\\x41\\xe2\\x82'
    """
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos : m.start()].encode("utf-8")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)
