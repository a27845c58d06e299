"""TFRecord framing without TensorFlow.

Each record is ``uint64 length | uint32 masked_crc32c(length bytes) | data | uint32
masked_crc32c(data)`` (little endian). Both checksums are verified on read. Gzip-compressed
shards (magic ``1f 8b``) are streamed transparently; their byte offsets refer to the
decompressed stream.
"""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import crc32c

_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class CorruptRecordError(ValueError):
    """A record that cannot be read: bad framing, checksum, truncation or payload.

    Attributes: ``path``, ``record_index`` (0-based), ``offset`` (byte offset of the record's
    header; in the decompressed stream for gzip files), ``reason``.
    """

    def __init__(self, path: str | Path, record_index: int, offset: int, reason: str) -> None:
        self.path, self.record_index, self.offset, self.reason = str(path), record_index, offset, reason
        super().__init__(f"{path}: record {record_index} at byte offset {offset}: {reason}")


def masked_crc32c(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: Path) -> tuple[BinaryIO, bool]:
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), True  # type: ignore[return-value]
    return raw, False


def iter_records(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record_index, byte_offset, payload)`` for every record, verifying both CRCs.

    Raises :class:`CorruptRecordError` on the first unreadable record.
    """
    for index, offset, data, err in iter_frames(path):
        if err is not None:
            raise err
        yield index, offset, data


def iter_frames(path: str | Path) -> Iterator[tuple[int, int, bytes, CorruptRecordError | None]]:
    """Like :func:`iter_records` but a record whose *payload* CRC fails is yielded with its error
    (the framing is intact, so reading goes on). Framing errors (length CRC, truncation, broken
    gzip) are raised: the rest of the file cannot be located after them.
    """
    path = Path(path)
    f, gz = _open(path)
    where = " (offset in decompressed stream)" if gz else ""
    with f:
        index, offset = 0, 0
        while True:
            try:
                header = f.read(12)
            except (OSError, EOFError) as e:  # broken gzip stream
                raise CorruptRecordError(path, index, offset, f"cannot decompress: {e}{where}") from None
            if not header:
                return
            if len(header) < 12:
                raise CorruptRecordError(path, index, offset, f"truncated header ({len(header)} of 12 bytes){where}")
            (length,) = _U64.unpack_from(header, 0)
            (length_crc,) = _U32.unpack_from(header, 8)
            if masked_crc32c(header[:8]) != length_crc:
                raise CorruptRecordError(path, index, offset, f"length CRC mismatch{where}")
            try:
                body = f.read(length + 4)
            except (OSError, EOFError) as e:
                raise CorruptRecordError(path, index, offset, f"cannot decompress: {e}{where}") from None
            if len(body) < length + 4:
                raise CorruptRecordError(
                    path, index, offset, f"truncated record: {len(body)} of {length + 4} bytes after header{where}"
                )
            data = body[:length]
            (data_crc,) = _U32.unpack_from(body, length)
            err = None
            if masked_crc32c(data) != data_crc:
                err = CorruptRecordError(path, index, offset, f"data CRC mismatch{where}")
            yield index, offset, data, err
            index += 1
            offset += 12 + length + 4


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
    with open(tmp, "wb") as raw:
        # empty name and mtime=0 keep gzip output byte-identical across runs
        out: BinaryIO = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if compress else raw  # type: ignore[assignment]
        buf = io.BufferedWriter(out) if compress else out
        for rec in records:
            buf.write(encode_record(rec))
            n += 1
        buf.flush()
        if compress:
            out.close()
    tmp.replace(path)
    return n
