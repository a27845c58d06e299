"""TFRecord framing without TensorFlow.

Each record is ``uint64 length | uint32 masked_crc32c(length bytes) | data | uint32
masked_crc32c(data)`` (little endian). Both checksums are verified on read. Gzip-compressed
shards (magic ``1f 8b``) are streamed transparently; their byte offsets refer to the
decompressed stream.

After a damaged length field the reader *resynchronises*: it scans forward for the next
12-byte header whose length CRC checks out, so one bad record does not hide the rest of the
file. The damaged stretch counts as one record index (how many records it held is unknowable).
"""
from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import crc32c

_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HEADER = 12
_CHUNK = 1 << 20
# Real records are < 4 GiB, so the high half of a genuine length field is zero; scanning for
# that first avoids a CRC per byte while resynchronising.
_ZERO4 = b"\x00\x00\x00\x00"


class CorruptRecordError(ValueError):
    """A record that cannot be read: bad framing, checksum, truncation or payload.

    Attributes: ``path``, ``record_index`` (0-based), ``offset`` (byte offset of the record's
    header; in the decompressed stream for gzip files), ``reason``.
    """

    def __init__(self, path: str | Path, record_index: int, offset: int, reason: str) -> None:
        self.path, self.record_index, self.offset, self.reason = str(path), record_index, offset, reason
        super().__init__(f"{path}: record {record_index} at byte offset {offset}: {reason}")

    def __reduce__(self):  # keep the attributes when crossing process boundaries (cache workers)
        return self.__class__, (self.path, self.record_index, self.offset, self.reason)


def masked_crc32c(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class _Stream:
    """A forward reader with push-back, so resynchronisation can return bytes it over-read."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self._buf = f, b""

    def read(self, n: int) -> bytes:
        if not self._buf:
            return self._f.read(n)
        if len(self._buf) >= n:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        out, self._buf = self._buf, b""
        return out + self._f.read(n - len(out))

    def unread(self, data: bytes) -> None:
        self._buf = data + self._buf


def _open(path: Path) -> tuple[BinaryIO, bool]:
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), True  # type: ignore[return-value]
    return raw, False


def _find_header(stream: _Stream, window: bytes, base: int) -> int | None:
    """Scan ``window`` (stream bytes starting at offset ``base``) and what follows for a header
    whose length CRC matches; push the bytes from it back and return its offset (None at EOF)."""
    while True:
        more = stream.read(_CHUNK)
        window += more
        limit = len(window) - _HEADER + 1  # positions with a full header inside the window
        p = 0
        while p < limit:
            z = window.find(_ZERO4, p + 4, limit + 7)
            if z < 0:
                break
            p = z - 4
            if masked_crc32c(window[p : p + 8]) == _U32.unpack_from(window, p + 8)[0]:
                stream.unread(window[p:])
                return base + p
            p += 1
        if not more:
            return None
        keep = max(limit, 0)
        window, base = window[keep:], base + keep


def iter_records(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record_index, byte_offset, payload)`` for every record, verifying both CRCs.

    Raises :class:`CorruptRecordError` on the first unreadable record.
    """
    for index, offset, data, err in iter_frames(path):
        if err is not None:
            raise err
        yield index, offset, data


def iter_frames(path: str | Path) -> Iterator[tuple[int, int, bytes, CorruptRecordError | None]]:
    """Like :func:`iter_records`, but problems are yielded as ``(index, offset, b"", error)``
    instead of raised, and reading goes on wherever the file allows: after a bad payload CRC
    with the next record, after a bad length CRC at the next valid header (resynchronisation).
    A truncated file or a broken gzip stream ends the iteration after its error.
    """
    path = Path(path)
    f, gz = _open(path)
    where = " (offset in decompressed stream)" if gz else ""
    stream = _Stream(f)

    def err(index: int, offset: int, reason: str) -> CorruptRecordError:
        return CorruptRecordError(path, index, offset, reason + where)

    with f:
        index, offset = 0, 0
        while True:
            try:
                header = stream.read(_HEADER)
                if not header:
                    return
                if len(header) < _HEADER:
                    yield index, offset, b"", err(index, offset, f"truncated header ({len(header)} of 12 bytes)")
                    return
                (length,) = _U64.unpack_from(header, 0)
                if masked_crc32c(header[:8]) != _U32.unpack_from(header, 8)[0]:
                    found = _find_header(stream, header[1:], offset + 1)
                    nxt = f"byte {found}" if found is not None else "none before the end of the file"
                    yield index, offset, b"", err(index, offset, f"length CRC mismatch; next valid header: {nxt}")
                    if found is None:
                        return
                    index, offset = index + 1, found
                    continue
                body = stream.read(length + 4)
            except (OSError, EOFError, zlib.error) as e:  # broken gzip stream
                yield index, offset, b"", err(index, offset, f"cannot decompress: {e}")
                return
            if len(body) < length + 4:
                yield index, offset, b"", err(
                    index, offset, f"truncated record: {len(body)} of {length + 4} bytes after the header"
                )
                return
            data = body[:length]
            if masked_crc32c(data) != _U32.unpack_from(body, length)[0]:
                yield index, offset, b"", err(index, offset, "data CRC mismatch")
            else:
                yield index, offset, data, None
            index += 1
            offset += _HEADER + length + 4


def index_records(path: str | Path) -> tuple[list[tuple[int, int]], int]:
    """``([(offset, length)], n_bad)`` from the record headers alone (payloads are skipped, not read
    or checked); stops at the first bad header. Offsets are in the decompressed stream for gzip."""
    f, _ = _open(Path(path))
    out, bad, off = [], 0, 0
    with f:
        while True:
            header = f.read(_HEADER)
            if not header:
                break
            if len(header) < _HEADER or masked_crc32c(header[:8]) != _U32.unpack_from(header, 8)[0]:
                bad += 1
                break
            (length,) = _U64.unpack_from(header, 0)
            f.seek(length + 4, 1)
            out.append((off, length))
            off += _HEADER + length + 4
    return out, bad


def open_records(path: str | Path) -> BinaryIO:
    """A seekable handle for :func:`read_record_at` (gzip is decompressed transparently)."""
    return _open(Path(path))[0]


def read_record_at(f: BinaryIO, path: str | Path, index: int, offset: int, length: int) -> bytes:
    """The payload of the record whose header is at ``offset``, its data CRC checked."""
    f.seek(offset + _HEADER)
    body = f.read(length + 4)
    data = body[:length]
    if len(body) < length + 4 or masked_crc32c(data) != _U32.unpack_from(body, length)[0]:
        raise CorruptRecordError(path, index, offset, "data CRC mismatch or truncated record")
    return data


def encode_record(data: bytes) -> bytes:
    header = _U64.pack(len(data))
    return header + _U32.pack(masked_crc32c(header)) + data + _U32.pack(masked_crc32c(data))


def write_records(path: str | Path, records: Iterable[bytes], compress: bool | None = None) -> int:
    """Write records atomically (temp file, then rename); gzip if ``compress`` or the name ends in .gz.

    Returns the number of records written.
    """
    path = Path(path)
    compress = path.suffix == ".gz" if compress is None else compress
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "wb") as raw:
            # empty name and mtime=0 keep gzip output byte-identical across runs
            out: BinaryIO = (
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if compress else raw  # type: ignore[assignment]
            )
            buf = io.BufferedWriter(out) if compress else out  # type: ignore[arg-type]
            for rec in records:
                buf.write(encode_record(rec))
                n += 1
            buf.flush()
            if compress:
                out.close()
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
