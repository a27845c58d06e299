"""TFRecord framing: both CRCs, truncation, gzip, resynchronisation after a damaged length field."""
from __future__ import annotations

import gzip
import pickle
import struct

import crc32c
import pytest
from hypothesis import given, settings, strategies as st

from drope.data.tfrecord import CorruptRecordError, encode_record, iter_frames, iter_records, masked_crc32c, write_records

payloads = st.lists(st.binary(max_size=300), max_size=6)


def test_crc_and_mask_known_values():
    assert crc32c.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4 test vector
    assert masked_crc32c(b"") == 0xA282EAD8  # crc 0 leaves only the mask delta
    rec = encode_record(b"")
    assert len(rec) == 16 and rec[:8] == bytes(8) and rec[12:] == bytes.fromhex("d8ea82a2")


@settings(max_examples=25, deadline=None)
@given(records=payloads, gz=st.booleans())
def test_write_then_read_round_trips(tmp_path_factory, records, gz):
    path = tmp_path_factory.mktemp("rt") / ("r.tfrecord" + (".gz" if gz else ""))
    assert write_records(path, records) == len(records)
    got = list(iter_records(path))
    assert [d for _, _, d in got] == records
    offsets = [0]
    for r in records[:-1]:
        offsets.append(offsets[-1] + 16 + len(r))
    assert [o for _, o, _ in got] == offsets[: len(records)]
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz


@settings(max_examples=25, deadline=None)
@given(data=st.binary(min_size=1, max_size=200), bit=st.integers(0, 10_000))
def test_any_single_bit_flip_is_detected(tmp_path_factory, data, bit):
    rec = bytearray(encode_record(data))
    bit %= len(rec) * 8
    rec[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path_factory.mktemp("flip") / "r.tfrecord"
    path.write_bytes(bytes(rec))
    with pytest.raises(CorruptRecordError) as e:
        list(iter_records(path))
    assert e.value.record_index == 0 and e.value.offset == 0 and str(path) in str(e.value)


def test_bad_length_crc_resynchronises_at_the_next_record(tmp_path):
    recs = [b"first" * 50, b"second" * 50, b"third" * 50]
    blobs = [bytearray(encode_record(r)) for r in recs]
    blobs[1][9] ^= 0x10  # damage the stored length CRC of record 1
    path = tmp_path / "r.tfrecord"
    path.write_bytes(b"".join(blobs))
    frames = list(iter_frames(path))
    assert [(i, o, d) for i, o, d, e in frames if e is None] == [
        (0, 0, recs[0]), (2, len(blobs[0]) + len(blobs[1]), recs[2])
    ]
    (bad,) = [e for *_, e in frames if e is not None]
    assert bad.record_index == 1 and bad.offset == len(blobs[0]) and "length CRC" in bad.reason
    with pytest.raises(CorruptRecordError, match="length CRC"):
        list(iter_records(path))


def test_garbage_between_records_is_skipped_on_resync(tmp_path):
    # a length field claiming 2**40 bytes with a wrong CRC, then zeros: the scan must not stop at them
    junk = struct.pack("<QI", 1 << 40, 0) + b"\x00" * 5000
    path = tmp_path / "r.tfrecord"
    path.write_bytes(encode_record(b"a") + junk + encode_record(b"b"))
    good = [d for _, _, d, e in iter_frames(path) if e is None]
    assert good == [b"a", b"b"]


def test_truncated_header_and_body(tmp_path):
    full = encode_record(b"x" * 100)
    for cut, what in ((5, "truncated header"), (len(full) - 3, "truncated record")):
        path = tmp_path / f"t{cut}.tfrecord"
        path.write_bytes(full + full[:cut])
        frames = list(iter_frames(path))
        assert frames[0][3] is None and frames[1][3] is not None
        assert frames[1][3].record_index == 1 and frames[1][3].offset == len(full) and what in str(frames[1][3])


def test_broken_gzip_names_the_decompressed_offset(tmp_path):
    path = tmp_path / "r.tfrecord.gz"
    path.write_bytes(gzip.compress(encode_record(b"a" * 1000) + encode_record(bytes(range(256)) * 200))[:-300])
    with pytest.raises(CorruptRecordError) as e:
        list(iter_records(path))
    assert e.value.record_index == 1 and e.value.offset == 1016 and "decompressed" in str(e.value)


def test_error_survives_pickling():
    e = pickle.loads(pickle.dumps(CorruptRecordError("f.tfrecord", 3, 1234, "data CRC mismatch")))
    assert (e.path, e.record_index, e.offset, e.reason) == ("f.tfrecord", 3, 1234, "data CRC mismatch")
    assert isinstance(e, ValueError) and "record 3 at byte offset 1234" in str(e)


def test_failed_write_leaves_no_file(tmp_path):
    def records():
        yield b"ok"
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_records(tmp_path / "w.tfrecord", records())
    assert list(tmp_path.iterdir()) == []
