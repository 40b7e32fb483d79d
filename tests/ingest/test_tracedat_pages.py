"""The compiled page walk's errors reach the user as the reader's InputError texts: the
file, the CPU, the page's place in the file (or in its compressed chunk) and the byte in
the page, for each kind of corrupt page."""

from __future__ import annotations

import re
import struct

import pytest

from rmapscope.dataset import Dataset
from rmapscope.errors import InputError
from rmapscope.ingest import ingest
from rmapscope.record import tracedat as tw
from tests.ingest.test_tracedat import mark, synthetic, write


def _one_page(entries: list[bytes], commit: int | None = None) -> tw.TraceSpec:
    spec = synthetic()
    page = bytearray(tw.make_page(10, entries))
    if commit is not None:
        page[8:16] = struct.pack("<Q", commit)
    spec.buffers = [tw.BufferSpec("", "local", {0: bytes(page)})]
    return spec


GOOD = tw.data_entry(1, mark(7, 1))  # a 16-byte entry
ODD_PAD = struct.pack("<II", 29 | 1 << 5, 6) + b"\0" * 8  # padding of 6 bytes
CASES = [
    # a commit larger than the page's data area
    ([GOOD], 5000, "page header claims 5000 bytes of data in a 4096-byte page"),
    # a type-0 entry whose length word is below 4, after a good entry
    ([GOOD, struct.pack("<II", 0, 2)], None, "a malformed entry at byte 32 of the page"),
    ([ODD_PAD], None, "a malformed entry at byte 16 of the page"),
]  # fmt: skip


@pytest.mark.parametrize("entries,commit,words", CASES)
def test_corrupt_pages_name_their_place(tmp_path, entries, commit, words):
    p = write(tmp_path, _one_page(entries, commit), 6)
    with pytest.raises(InputError, match=r"CPU 0 page at byte \d+: " + re.escape(words)) as err:
        ingest(str(p), Dataset(tmp_path / "ds"))
    assert str(p) in str(err.value) and str(err.value).endswith("corrupt trace.dat")


def test_corrupt_compressed_page_names_its_chunk(tmp_path):
    p = write(tmp_path, _one_page(*CASES[0][:2]), 7, "zstd")
    pattern = r"CPU 0 page 0 \(in the compressed chunk at byte \d+\): page header claims 5000"
    with pytest.raises(InputError, match=pattern):
        ingest(str(p), Dataset(tmp_path / "ds"))
