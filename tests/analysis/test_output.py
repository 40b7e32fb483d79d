"""Query results on a terminal: a trace's control characters are shown, never acted on."""

from __future__ import annotations

import json

import polars as pl
import pytest

from rmapscope.analysis._output import render

HOSTILE = pl.DataFrame({"comm": ["evil\x1b]0;owned\x07\x1b[2J", "ok"], "pid": [1, 2]})


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_terminal_formats_show_control_characters_escaped(fmt):
    text = render(HOSTILE, fmt)
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)
    assert "evil\\x1b]0;owned\\x07\\x1b[2J" in text


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_machine_formats_keep_the_stored_text(fmt):
    text = render(HOSTILE, fmt)
    rows = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
    assert rows[0]["comm"] == HOSTILE["comm"][0]


def test_csv_keeps_the_stored_text():
    assert (
        pl.read_csv(render(HOSTILE, "csv").encode())["comm"].to_list() == HOSTILE["comm"].to_list()
    )
