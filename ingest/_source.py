"""Stage 1: read bytes. Open a trace (file, compressed file or stdin) and yield line blocks.

Compression is detected by magic bytes, never by file name. Blocks end on a line
boundary; the decompressed content is hashed on the way (the trace id).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, cast

import zstandard

from rmapscope.errors import InputError

BLOCK_SIZE = 16 << 20

_MAGIC = [
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
]


class ByteStream(Protocol):
    """What a :class:`Source` reads from: a file, a pipe or a decompressor."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left for -1); empty at the end."""
        ...

    def tell(self) -> int:
        """The position reached, in the stream's own bytes."""
        ...

    def close(self) -> None:
        """Release the stream."""
        ...


@dataclass
class Source:
    """An opened input: its display name, compression and a reader of decompressed bytes."""

    name: str
    compression: str | None
    size: int | None  # bytes on disk (compressed), None for pipes
    raw: ByteStream
    reader: ByteStream
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    bytes_read: int = 0
    _hasher: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    _pending: list[Future] = field(default_factory=list)

    def update_hash(self, chunk: bytes) -> None:
        """Feed ``chunk`` to the content hash on a background thread (in order)."""
        self._pending.append(self._hasher.submit(self.sha256.update, chunk))
        if len(self._pending) > 4:
            self._pending.pop(0).result()

    def hexdigest(self) -> str:
        """The sha256 of all content read so far."""
        for f in self._pending:
            f.result()
        self._pending.clear()
        return self.sha256.hexdigest()

    def compressed_position(self) -> int:
        """How far into the underlying file we are (for progress)."""
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return self.bytes_read

    def close(self) -> None:
        """Close the reader, the underlying file and the hashing thread."""
        self._hasher.shutdown(wait=True)
        for f in (self.reader, self.raw):
            with contextlib.suppress(Exception):
                f.close()


def open_source(path: str) -> Source:
    """Open ``path`` (or ``-`` for stdin), detecting compression from its magic bytes.

    Raises :class:`InputError` for a missing path, a directory, or no read permission.
    """
    if path == "-":
        raw: BinaryIO = sys.stdin.buffer
        name, size = "<stdin>", None
    else:
        name = path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except PermissionError:
            raise InputError(f"{path}: permission denied") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: is a directory, not a trace file")
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by Source.close
        except PermissionError:
            raise InputError(f"{path}: permission denied (cannot read)") from None
        except OSError as e:
            raise InputError(f"{path}: cannot open: {e.strerror}") from None
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
    # a stdin replaced by a caller may be unbuffered: BufferedReader only needs its readinto()
    if isinstance(raw, io.BufferedReader):
        buffered = raw
    else:
        buffered = io.BufferedReader(cast(io.RawIOBase, raw))
    head = buffered.peek(8)[:8]
    compression = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    reader: ByteStream
    if compression == "gzip":
        reader = gzip.GzipFile(fileobj=buffered)
    elif compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    elif compression == "xz":
        reader = lzma.LZMAFile(buffered)  # noqa: SIM115 - closed by Source.close
    elif compression == "bz2":
        reader = bz2.BZ2File(buffered)
    else:
        reader = buffered
    return Source(name=name, compression=compression, size=size, raw=buffered, reader=reader)


def read_blocks(src: Source, block_size: int | None = None) -> Iterator[bytes]:
    """Yield blocks of whole lines, each ending with a newline (``BLOCK_SIZE`` bytes or so).

    Decompression errors become :class:`InputError` with the byte offset reached.
    """
    block_size = block_size or BLOCK_SIZE
    if src.compression is None and src.size is not None and src.reader is src.raw:
        yield from _pread_blocks(src, block_size)
    yield from _stream_blocks(src, block_size)


#: how much of a block's end :func:`_pread_blocks` reads at a time looking for a newline
_WINDOW = 1 << 16


def _pread_blocks(src: Source, block_size: int) -> Iterator[bytes]:
    """The blocks of :func:`_stream_blocks` (cut at the last newline before each multiple of
    ``block_size``) from a regular uncompressed file, each read by ``os.pread`` straight into
    its own bytes without holding the GIL: no copies to cut a block at a line end or to join
    the line carried over. Stops before a last line without a newline, or where the file
    changed since it was opened; the stream reads on from there."""
    raw = cast(io.BufferedReader, src.raw)
    fd = raw.fileno()
    size = cast(int, src.size)
    pos = 0  # where the next block starts
    seen = 0  # no newline between pos and here
    k = 0  # the next block ends at the last newline before (k + 1) * block_size
    while pos < size:
        end = min((k + 1) * block_size, size)
        k += 1
        cut, hi = -1, end
        while hi > max(pos, seen) and cut < 0:
            lo = max(pos, seen, hi - _WINDOW)
            at = os.pread(fd, hi - lo, lo).rfind(b"\n")
            cut, hi = (lo + at if at >= 0 else -1), lo
        seen = end
        if cut < 0:
            if end - pos > 64 * block_size:
                raise InputError(f"{src.name}: no line break in the first {end - pos} bytes")
            if end < size:
                continue
            break
        block = os.pread(fd, cut + 1 - pos, pos)
        if len(block) != cut + 1 - pos or not block.endswith(b"\n"):
            break
        src.update_hash(block)
        src.bytes_read += len(block)
        pos += len(block)
        raw.seek(pos)  # for progress (compressed_position), and the stream after
        yield block


def _stream_blocks(src: Source, block_size: int) -> Iterator[bytes]:
    """The blocks of ``src.reader`` from where it is."""
    carry = b""
    while True:
        try:
            chunk = src.reader.read(block_size)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as e:
            raise InputError(
                f"{src.name}: corrupt {src.compression or 'input'} data near byte "
                f"{src.compressed_position()} of the file "
                f"({src.bytes_read} bytes decompressed before it): {e}"
            ) from None
        if not chunk:
            break
        src.update_hash(chunk)
        src.bytes_read += len(chunk)
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry += chunk
            if len(carry) > 64 * block_size:
                raise InputError(f"{src.name}: no line break in the first {len(carry)} bytes")
            continue
        if carry:
            yield carry + chunk[: cut + 1]
        else:
            yield chunk if cut == len(chunk) - 1 else chunk[: cut + 1]
        carry = chunk[cut + 1 :]
    if carry:
        yield carry + b"\n"  # every block ends with a newline (the hash saw the real bytes)
