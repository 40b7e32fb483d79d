"""A small reader of a kernel's BTF: struct member offsets and function parameter names.

The lab computes every probe offset from the booted image's own BTF (never by hand). The
BTF comes from the ``.BTF`` section of an ELF ``vmlinux`` (extracted from the ``vmlinuz``)
or, for images without section headers (arm64 ``Image``), from the BTF blob found by its
magic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["Btf", "BtfError", "find_btf"]

_MAGIC = 0xEB9F
# kind -> size of the data that follows struct btf_type (fixed part, per-vlen part)
_EXTRA = {
    1: (4, 0),  # INT
    2: (0, 0),  # PTR
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    7: (0, 0),  # FWD
    8: (0, 0),  # TYPEDEF
    9: (0, 0),  # VOLATILE
    10: (0, 0),  # CONST
    11: (0, 0),  # RESTRICT
    12: (0, 0),  # FUNC
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),  # FLOAT
    17: (4, 0),  # DECL_TAG
    18: (0, 0),  # TYPE_TAG
    19: (0, 12),  # ENUM64
}
_STRUCT, _UNION, _PTR, _TYPEDEF, _FUNC, _PROTO = 4, 5, 2, 8, 12, 13
_MODIFIERS = {8, 9, 10, 11, 18}


class BtfError(ValueError):
    """The blob is not BTF this reader understands (the caller turns it into an InputError)."""


@dataclass
class _Type:
    kind: int
    name: str
    ref: int  # size for struct/union/int/enum, referenced type id otherwise
    members: list[tuple[str, int, int]] = field(default_factory=list)  # (name, type, bit offset)


def find_btf(image: bytes) -> bytes:
    """The BTF blob of a kernel image (ELF ``.BTF`` section, else found by its magic)."""
    if image[:4] == b"\x7fELF" and image[4] == 2:
        end = "<" if image[5] == 1 else ">"
        (shoff,) = struct.unpack_from(end + "Q", image, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", image, 0x3A)
        sections = [
            struct.unpack_from(end + "IIQQQQ", image, shoff + i * shentsize) for i in range(shnum)
        ]
        names = sections[shstrndx]
        for sh in sections:
            at = names[4] + sh[0]
            name = image[at : image.index(b"\0", at)]
            if name == b".BTF":
                return image[sh[4] : sh[4] + sh[5]]
    at = 0
    while (at := image.find(b"\x9f\xeb\x01", at)) >= 0:  # little-endian magic, version 1
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", image, at + 4)
        if hdr_len == 24 and type_off == 0 and str_off == type_len and str_len > 0:
            return image[at : at + hdr_len + str_off + str_len]
        at += 1
    raise BtfError("no BTF in the kernel image (CONFIG_DEBUG_INFO_BTF off?)")


class Btf:
    """Parsed BTF: look up structs by name and functions' parameters."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24 or struct.unpack_from("<H", blob)[0] != _MAGIC:
            raise BtfError("not a little-endian BTF blob")
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", blob, 4)
        strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]

        def name(off: int) -> str:
            return strings[off : strings.index(b"\0", off)].decode()

        self.types: list[_Type] = [_Type(0, "void", 0)]
        at, end = hdr_len + type_off, hdr_len + type_off + type_len
        while at < end:
            name_off, info, ref = struct.unpack_from("<III", blob, at)
            at += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            if kind not in _EXTRA:
                raise BtfError(f"unknown BTF kind {kind}")
            t = _Type(kind, name(name_off), ref)
            fixed, per = _EXTRA[kind]
            if kind in (_STRUCT, _UNION):
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", blob, at + i * 12)
                    bits = m_off & 0xFFFFFF if kflag else m_off
                    t.members.append((name(m_name), m_type, bits))
            elif kind == _PROTO:
                for i in range(vlen):
                    p_name, p_type = struct.unpack_from("<II", blob, at + i * 8)
                    t.members.append((name(p_name), p_type, i))
            at += fixed + per * vlen
            self.types.append(t)
        self._by_name: dict[tuple[int, str], int] = {}
        for i, t in enumerate(self.types):
            if t.name and (t.kind, t.name) not in self._by_name:
                self._by_name[(t.kind, t.name)] = i

    def _strip(self, tid: int) -> int:
        while self.types[tid].kind in _MODIFIERS:
            tid = self.types[tid].ref
        return tid

    def params(self, func: str) -> list[tuple[str, int]]:
        """The (name, type id) of each parameter of kernel function ``func``."""
        tid = self._by_name.get((_FUNC, func))
        if tid is None:
            raise BtfError(f"function {func} not in the kernel's BTF")
        proto = self.types[self.types[tid].ref]
        return [(n, t) for n, t, _ in proto.members]

    def pointee_struct(self, tid: int) -> int:
        """The struct a pointer type id points to."""
        t = self.types[self._strip(tid)]
        if t.kind != _PTR:
            raise BtfError(f"type {t.name or tid} is not a pointer")
        return self._strip(t.ref)

    def member(self, struct_id: int, name: str) -> tuple[int, int]:
        """(byte offset, type id) of member ``name`` of a struct/union, anonymous ones searched."""
        found = self._member(self._strip(struct_id), name)
        if found is None:
            raise BtfError(f"struct {self.types[struct_id].name} has no member {name}")
        bits, tid = found
        return bits // 8, tid

    def _member(self, sid: int, name: str) -> tuple[int, int] | None:
        for m_name, m_type, bits in self.types[sid].members:
            if m_name == name:
                return bits, m_type
            inner = self._strip(m_type)
            if not m_name and self.types[inner].kind in (_STRUCT, _UNION):
                found = self._member(inner, name)
                if found is not None:
                    return bits + found[0], found[1]
        return None

    def struct(self, name: str) -> int:
        """The type id of ``struct name``."""
        tid = self._by_name.get((_STRUCT, name))
        if tid is None:
            raise BtfError(f"struct {name} not in the kernel's BTF")
        return tid
