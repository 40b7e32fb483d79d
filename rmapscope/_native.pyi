"""Type stubs of the compiled ingest core (native/src, Rust with PyO3)."""

__version__: str

class Buffer:
    """Read-only bytes owned by the core; ``pyarrow.py_buffer`` wraps them without a copy."""

    @staticmethod
    def int64(values: list[int]) -> Buffer: ...
    def __len__(self) -> int: ...

#: one column: ("i64" | "i32", rows, nulls, validity, values) or
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
