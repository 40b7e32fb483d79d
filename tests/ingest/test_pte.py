"""Decoding migration entries and restored ptes (docs/formats.md section 4 examples)."""

from __future__ import annotations

import numpy as np
import pytest

from rmapscope.ingest.pte import calibrate_kinds, decode_present, decode_swap_entry


def u64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_x86_swap_entry_read_and_young():
    d = decode_swap_entry(u64(0xE7FFFFFFDFC7C000, 0xE7FFF7FFDFC40000), "x86_64")
    assert d["swp_type"].tolist() == [28, 28]
    assert [hex(int(p)) for p in d["pfn"]] == ["0x101c1f", "0x101dff"]
    assert d["young"].tolist() == [False, True]
    assert d["dirty"].tolist() == [False, False]


def test_x86_pmd_entry_dirty():
    d = decode_swap_entry(u64(0xE7FFEFFFC803FE00), "x86_64")
    assert int(d["swp_type"][0]) == 28
    assert hex(int(d["pfn"][0])) == "0x1bfe00"
    assert not d["young"][0] and d["dirty"][0]


def test_x86_5level_uses_40_pfn_bits():
    # the same pfn encoded with SWP_PFN_BITS = 40: young lands on offset bit 40
    pfn, bits = 0x101C1F, 40
    offset = pfn | (1 << bits)
    pte = ((~offset << 9) & ((1 << 59) - 1)) | (28 << 59)
    d = decode_swap_entry(u64(pte), "x86_64-la57")
    assert int(d["pfn"][0]) == pfn and d["young"][0]
    # read as 4-level paging, bit 40 is not the young bit
    assert not decode_swap_entry(u64(pte), "x86_64")["young"][0]


def test_x86_present_pte_and_huge_pmd():
    d = decode_present(u64(0x800000010C522005, 0x10C543025), "x86_64", huge=False)
    assert [hex(int(p)) for p in d["pfn"]] == ["0x10c522", "0x10c543"]
    assert d["present"].all() and not d["writable"].any()
    assert d["young"].tolist() == [False, True]
    assert d["nx"].tolist() == [True, False]
    h = decode_present(u64(0x8400000252A00085), "x86_64", huge=True)
    assert hex(int(h["pfn"][0])) == "0x252a00"
    # read-only and dirty: the dirty bit moved to _PAGE_SAVED_DIRTY (bit 58)
    assert h["dirty"][0] and not h["writable"][0]


def test_x86_protnone_pte_pfn_is_inverted():
    pfn = 0x123456
    pte = (~(pfn << 12)) & 0x000FFFFFFFFFF000 | 0x100  # PROT_NONE: present bit clear
    d = decode_present(u64(pte), "x86_64", huge=False)
    assert not d["present"][0] and int(d["pfn"][0]) == pfn


def test_arm64_swap_entry():
    d = decode_swap_entry(u64(0x101C1F700), "arm64")
    assert int(d["swp_type"][0]) == 28 and hex(int(d["pfn"][0])) == "0x101c1f"


def test_unknown_arch_is_rejected():
    with pytest.raises(ValueError, match="unknown arch"):
        decode_swap_entry(u64(0), "sparc")


def test_calibration_from_writable_restores_and_fallbacks():
    kinds, how = calibrate_kinds({24: 3, 26: 1}, {26: (1, 1), 24: (0, 3)})
    assert kinds == {24: "read", 25: "read_exclusive", 26: "write"} and "writable" in how
    kinds, how = calibrate_kinds({25: 1, 26: 1, 27: 1}, {})
    assert kinds[25] == "read" and kinds[27] == "write" and "three" in how
    kinds, how = calibrate_kinds({28: 5}, {28: (0, 5)})
    assert kinds[28] == "read" and "assumed" in how
