"""Type stubs of the compiled ingest core (native/src, Rust with PyO3)."""

__version__: str

class Buffer:
    """Read-only bytes owned by the core; ``pyarrow.py_buffer`` wraps them without a copy."""

    @staticmethod
    def int64(values: list[int]) -> Buffer: ...
    def __len__(self) -> int: ...
