"""Type stubs of the compiled ingest core (native/src, Rust with PyO3)."""

from collections.abc import Sequence

__version__: str

class Buffer:
    """Read-only bytes owned by the core; ``pyarrow.py_buffer`` wraps them without a copy."""

    @staticmethod
    def int64(values: list[int]) -> Buffer: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

class CorruptPage(ValueError):
    """A corrupt ring-buffer page; ``args`` are ``(page index in the group, message)``."""

def walk_pages(
    buf: object,
    n_pages: int,
    page_size: int,
    big_endian: bool,
    long_size: int,
    data_offset: int,
) -> tuple[Buffer, Buffer, Buffer, Buffer, Buffer, Buffer]:
    """Walk the pages of a group: ``(rec_off i64, rec_len i32, raw_ts u64, page i64,
    lost_pages i64, lost_counts i64)``, little-endian; raises :class:`CorruptPage`."""

#: a decoded trace.dat field: number values, or (int64 offsets, UTF-8 data, validity or
#: None, null count) of a ``large_string`` array
DatColumn = Buffer | tuple[Buffer, Buffer, Buffer | None, int]

def decode_batch(
    buf: object,
    rec: object,
    rec_len: object,
    key: object,
    ev_type: object,
    drop: object | None,
    headers: Sequence[tuple[object, int]],
    specs: dict[int, list[tuple[int, int, int, bool]]],
    big_endian: bool,
) -> tuple[Buffer, list[tuple[int, Buffer, Buffer, Buffer, list[Buffer], list[DatColumn]]]]:
    """Merge a batch's records into trace order, group them by event type and decode each
    type's fields (``specs``: ``(kind, offset, size, signed)``, kind 0 number, 1 char
    array, 2 ``__data_loc``, 3 ``__rel_loc``, 4 tail array): ``(order, [(type, rel i64,
    rec i64, rec_len i32, [gathered headers], [columns])])``."""

def distinct(values: object) -> tuple[Buffer, Buffer]:
    """The distinct values of a uint64 array in order of first appearance (u64) and each
    value's index among them (u32)."""

#: one column: ("i64" | "i32" | "u32" | "u64" | "bool", rows, nulls, validity, values) or
#: ("str", rows, nulls, validity, int64 offsets, UTF-8 data); validity None when no nulls
Column = tuple

def header_pattern(fmt: str) -> str:
    """The regex of an event line's header in text format ``fmt``."""

def line_pattern(fmt: str) -> str:
    """The regex of a whole event line in text format ``fmt``."""

def escape_block(block: bytes) -> Buffer:
    """``block`` as UTF-8, bytes that are not UTF-8 escaped (``ingest/_bytes.py``'s rule)."""

class TextTokenizer:
    """Splits blocks of one ftrace text format into the header columns of their event lines."""

    def __init__(self, fmt: str) -> None: ...
    def tokenize(
        self, block: bytes, line_base: int
    ) -> tuple[int, bool, dict[str, Column], dict[str, Column]]:
        """(lines, counter clock seen, event columns lineno ts cpu pid tgid comm flags event
        rest instance, other lines' columns lineno line); the GIL is released meanwhile."""

#: (prefix, None for literal text | (kind int/hex/bool/label, bool choices, true text), suffix)
PlanToken = tuple[str, tuple[str, list[str], str] | None, str]

class TokenPlan:
    """The token plan of an event's print fmt (``ingest/fields.py``), compiled."""

    def __init__(self, tokens: list[PlanToken], padded: bool) -> None: ...
    def split(
        self, rows: int, offset: int, valid: object | None, offsets: object, data: object
    ) -> tuple[list[Column], Column]:
        """Cut payloads (a ``large_string`` array's buffers): (a column per value token, the
        bool column of rows that parsed); the GIL is released meanwhile."""

class RegexPlan:
    """The regex of an event without a token plan, and its fields' conversions, compiled."""

    def __init__(
        self, pattern: str, columns: list[tuple[str, tuple[str, list[str], str]]]
    ) -> None: ...
    def parse(
        self, rows: int, offset: int, valid: object | None, offsets: object, data: object
    ) -> tuple[list[Column], Column]:
        """Match payloads (a ``large_string`` array's buffers): (a column per field, the bool
        column of rows that parsed); the GIL is released meanwhile."""

class LabelTable:
    """Label -> integer of a ``__print_symbolic`` / ``__print_flags`` conversion."""

    def __init__(
        self,
        names: list[tuple[str, int]],
        delim: str | None,
        other: str | None,
        suffix: tuple[int | None, str] | None,
    ) -> None: ...
    def values(
        self, rows: int, offset: int, valid: object | None, offsets: object, data: object
    ) -> Column:
        """The integer behind each label (an ``i64`` column, null where not in the table)."""

#: the buffers of a ``large_string`` array: (rows, offset, validity | None, offsets, data)
StringBuffers = tuple[int, int, object | None, object, object]

class EventPartition:
    """Groups a block's rows by event name (``native/core/src/text/partition.rs``)."""

    def __init__(self, probe: str) -> None: ...
    def partition(
        self, event: StringBuffers, rest: StringBuffers, columns: list[tuple]
    ) -> list[tuple[str | None, Column, Column | None, list[Column]]]:
        """Per event in order of first appearance: (name, its rows as a u32 column, which
        of its payloads are probe payloads as a bool column, None when none is, its rows of
        each of ``columns``: (kind i64/i32/str, rows, offset, validity | None, values or
        offsets, string data | None))."""
