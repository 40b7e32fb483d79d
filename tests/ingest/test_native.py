"""The compiled core's building blocks (native/src): buffers pyarrow wraps without a copy."""

from __future__ import annotations

import pyarrow as pa

from rmapscope import _native


def test_buffer_is_wrapped_without_a_copy() -> None:
    buf = _native.Buffer.int64([1, -2, 3])
    wrapped = pa.py_buffer(buf)
    assert wrapped.size == len(buf) == 24
    arr = pa.Array.from_buffers(pa.int64(), 3, [None, wrapped])
    assert arr.to_pylist() == [1, -2, 3]
    # the same memory, not a copy: two wraps see one address
    assert pa.py_buffer(buf).address == wrapped.address


def test_buffer_is_read_only() -> None:
    buf = _native.Buffer.int64([7])
    view = memoryview(buf)
    assert view.readonly
    assert view.tobytes() == (7).to_bytes(8, "little")
