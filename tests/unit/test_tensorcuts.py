"""cpv.engine.tensorcuts: the tensor-boundary cutting rule (store feature ``tensor-boundaries``).

GOLDEN VECTORS: the cut offsets pinned below ARE THE STORE FORMAT of every store created with
the feature. Do not update the numbers to make a test pass: a different rule is a new feature
name (cpv.engine.format), and stores with this one must keep cutting this way.

The safetensors files are built here byte for byte (JSON header + blake3 XOF tensor data); the
torch.save file is a real one (torch 2.13, ``tests/unit/data/tensorcuts-torch.pt``), committed
so that a torch upgrade cannot move the vectors.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpv.engine.chunking import DEFAULT_CHUNKER, ChunkerParams, iter_buffer_chunks, iter_file_chunks
from cpv.engine.hashing import chunk_id
from cpv.engine.tensorcuts import (
    SAFETENSORS_HEADER_LIMIT,
    ZIP_DIRECTORY_LIMIT,
    group_floor,
    plan_cuts,
)

KiB = 1024
MiB = 1024 * KiB
SMALL_T = ChunkerParams(
    min_size=16 * KiB, avg_size=48 * KiB, max_size=256 * KiB, tensor_boundaries=True
)
SMALL_PLAIN = ChunkerParams(min_size=16 * KiB, avg_size=48 * KiB, max_size=256 * KiB)
TORCH_FILE = Path(__file__).parent / "data" / "tensorcuts-torch.pt"


def xof(label: str, n: int) -> bytes:
    return blake3(label.encode()).digest(length=n)


def safetensors(tensors: list[tuple[str, bytes]], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file as the reference writer lays it out (header padded to 8 bytes)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, data in tensors:
        header[name] = {"dtype": "F32", "shape": [len(data) // 4],
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(data for _, data in tensors)


def cuts_of(data: bytes, params: ChunkerParams) -> list[int]:
    return [offset for offset, _ in iter_buffer_chunks(data, params)]


def file_cuts(path: Path, params: ChunkerParams) -> list[int]:
    return [offset for offset, _ in iter_file_chunks(path, params)]


def small_model() -> bytes:
    """LoRA-shaped: big base weights, small adapters and biases between them, one huge tensor."""
    tensors: list[tuple[str, bytes]] = []
    for layer in range(3):
        tensors += [
            (f"l{layer}.bias", xof(f"bias{layer}", 2 * KiB)),
            (f"l{layer}.lora_A", xof(f"A{layer}", 8 * KiB)),
            (f"l{layer}.lora_B", xof(f"B{layer}", 8 * KiB)),
            (f"l{layer}.weight", xof(f"w{layer}", 100 * KiB)),
        ]
    tensors.append(("z.embedding", xof("emb", 700 * KiB)))
    return safetensors(tensors, {"format": "pt"})


def default_model() -> bytes:
    tensors = [(f"t{i}", xof(f"t{i}", size)) for i, size in
               enumerate([3 * KiB, 5 * KiB, 1 * MiB + 12, 40 * KiB, 9 * MiB, 300 * KiB])]
    return safetensors(tensors)


# ----------------------------------------------------------------------------- golden vectors

# fmt: off
SMALL_MODEL_CUTS = [
    0, 992, 3040, 11232, 19424, 90399, 121824, 123872, 132064, 140256, 166100, 242656, 244704,
    252896, 261088, 363488, 420787, 550291, 576760, 664207, 717080, 792763, 845577, 965577,
    990820, 1060960,
]
DEFAULT_MODEL_CUTS = [
    0, 416, 3488, 8608, 1057196, 1098156, 2609369, 3549408, 4488390, 5871541, 6831752, 7106443,
    8815926, 9661552, 10535340,
]
TORCH_SMALL_CUTS = [
    0, 64, 568, 657, 786, 918, 1024, 61651, 123193, 144885, 296354, 331551, 371703, 394256,
    394368, 417547, 476304, 476416, 484624, 484736, 492944, 493084, 493184, 625904, 657040,
    657170, 657336,
]
TORCH_DEFAULT_CUTS = [
    0, 918, 1024, 394256, 394368, 476304, 476416, 484624, 484736, 492944, 493084, 493184, 657040,
    657336,
]
# fmt: on
TORCH_FILE_DIGEST = "2b48a93ffabf433f7226c7e43b72baa3d906606279463bc8ffcc5412dec37cbb"


def test_golden_safetensors_small() -> None:
    data = small_model()
    assert cuts_of(data, SMALL_T) == SMALL_MODEL_CUTS


def test_golden_safetensors_default() -> None:
    data = default_model()
    assert cuts_of(data, DEFAULT_CHUNKER) == DEFAULT_MODEL_CUTS


def test_golden_torch_save() -> None:
    data = TORCH_FILE.read_bytes()
    assert blake3(data).hexdigest() == TORCH_FILE_DIGEST
    assert cuts_of(data, SMALL_T) == TORCH_SMALL_CUTS
    assert cuts_of(data, DEFAULT_CHUNKER) == TORCH_DEFAULT_CUTS
    assert file_cuts(TORCH_FILE, DEFAULT_CHUNKER) == TORCH_DEFAULT_CUTS


def test_fallback_is_plain_fastcdc() -> None:
    # A header that does not parse (here: one byte of the JSON broken) is cut as any file.
    data = bytearray(small_model())
    data[9] = ord("!")
    assert cuts_of(bytes(data), SMALL_T) == cuts_of(bytes(data), SMALL_PLAIN)
    assert len(cuts_of(bytes(data), SMALL_T)) > 1


# ----------------------------------------------------------------------------- behaviour

def test_every_tensor_starts_a_segment_and_small_ones_are_grouped() -> None:
    data = small_model()
    header_end = 8 + struct.unpack_from("<Q", data)[0]
    cuts = set(cuts_of(data, SMALL_T))
    doc = json.loads(data[8:header_end])
    starts = {name: header_end + info["data_offsets"][0]
              for name, info in doc.items() if name != "__metadata__"}
    # The floor is min_size / 256 = 64 B: the header (992 B) and every tensor here are
    # pieces of their own.
    assert header_end in cuts and starts["l0.lora_A"] == header_end + 2 * KiB
    for layer in range(3):
        assert starts[f"l{layer}.lora_A"] in cuts
        assert starts[f"l{layer}.lora_B"] in cuts
        assert starts[f"l{layer}.weight"] in cuts
    assert starts["z.embedding"] in cuts
    # FastCDC still cuts inside the 700 KiB tensor (max_size is 256 KiB).
    assert len([c for c in cuts if c > starts["z.embedding"]]) >= 2


def test_changed_small_tensor_costs_about_its_bytes() -> None:
    """The finding: a changed adapter cost a whole mean chunk; now it costs its own bytes."""
    base = small_model()
    tuned = bytearray(base)
    header_end = 8 + struct.unpack_from("<Q", base)[0]
    info = json.loads(base[8:header_end])["l1.lora_B"]["data_offsets"]
    start, end = header_end + info[0], header_end + info[1]
    tuned[start:end] = xof("tuned", end - start)

    def new_bytes(params: ChunkerParams) -> int:
        old = {chunk_id(c) for _, c in iter_buffer_chunks(base, params)}
        return sum(len(c) for _, c in iter_buffer_chunks(bytes(tuned), params)
                   if chunk_id(c) not in old)

    changed = end - start
    assert new_bytes(SMALL_T) <= 1.5 * changed
    assert new_bytes(SMALL_PLAIN) > 3 * changed  # what the plain rule cost


def test_small_pieces_are_grouped_up_to_the_floor() -> None:
    # 400 tensors of 40 bytes (optimizer step counters, say): not 400 chunks of 40 bytes.
    data = safetensors([(f"t{i:03d}", xof(f"s{i}", 40)) for i in range(400)]
                       + [("big", xof("big", 300 * KiB))])
    floor = group_floor(DEFAULT_CHUNKER.min_size)
    assert floor == 1 * KiB
    sizes = [len(c) for _, c in iter_buffer_chunks(data, DEFAULT_CHUNKER)]
    # The header (~28 KiB) and the big tensor are segments of their own; the 16,000 bytes of
    # small tensors between them are grouped into chunks of at most the floor.
    assert all(size <= floor for size in sizes[1:-1])
    assert len(sizes) < 25


def test_file_of_at_most_min_size_is_one_chunk() -> None:
    data = safetensors([("a", xof("a", 4 * KiB)), ("b", xof("b", 4 * KiB))])
    assert len(data) <= SMALL_T.min_size
    assert cuts_of(data, SMALL_T) == [0]


def test_file_and_buffer_agree_for_every_read_buffer(tmp_path: Path) -> None:
    data = default_model()
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    from cpv.engine.chunking import min_read_buffer_size, new_read_buffer

    for size in (min_read_buffer_size(DEFAULT_CHUNKER), 9 * MiB, None):
        buf = new_read_buffer(DEFAULT_CHUNKER, size=size)
        chunks = [(o, bytes(c)) for o, c in iter_file_chunks(path, DEFAULT_CHUNKER, buffer=buf)]
        assert [o for o, _ in chunks] == DEFAULT_MODEL_CUTS
        assert b"".join(c for _, c in chunks) == data


# ----------------------------------------------------------------------------- hostile input

def check(data: bytes, params: ChunkerParams = SMALL_T) -> None:
    cuts = plan_cuts(lambda o, n: data[o : o + n], len(data), min_size=params.min_size)
    assert cuts == sorted(set(cuts))
    assert all(0 < c < len(data) for c in cuts)
    chunks = list(iter_buffer_chunks(data, params))
    assert b"".join(bytes(c) for _, c in chunks) == data
    assert [o for o, _ in chunks][1:] == sorted(o for o, _ in chunks)[1:]


def a_zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=20,
)
offsets = st.lists(st.integers(-5, 40 * KiB) | st.booleans() | st.none(), min_size=0, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.dictionaries(
        st.text(max_size=6),
        st.fixed_dictionaries({"data_offsets": offsets}) | json_values,
        max_size=6,
    ),
    length_delta=st.sampled_from([0, 0, 0, -1, 1, 2**40, -(2**20)]),
    body=st.integers(0, 40 * KiB),
)
def test_hostile_safetensors_headers_never_fail(header: dict[str, object], length_delta: int,
                                                body: int) -> None:
    raw = json.dumps(header).encode()
    length = max(0, len(raw) + length_delta) % 2**64
    check(struct.pack("<Q", length) + raw + xof("body", body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 2**31),
    truncate=st.booleans(),
)
def test_damaged_zips_never_fail(flips: list[tuple[int, int]], cut: int, truncate: bool) -> None:
    data = bytearray(a_zip([("archive/data.pkl", xof("pkl", 300)),
                            ("archive/data/0", xof("t0", 30 * KiB)),
                            ("archive/data/1", xof("t1", 3 * KiB))]))
    for at, value in flips:
        data[at % len(data)] = value
    if truncate:
        del data[cut % len(data) :]
    check(bytes(data))


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=70 * KiB))
def test_arbitrary_bytes_never_fail(data: bytes) -> None:
    check(data)


def test_hostile_lengths_cost_bounded_reads() -> None:
    """A 1 TiB 'file' whose headers claim huge sizes: only bounded reads, nothing parsed."""
    size = 1 << 40
    requested: list[int] = []

    def sparse(head: bytes, tail: bytes) -> object:
        def read_at(offset: int, length: int) -> bytes:
            requested.append(length)
            if offset < len(head):
                return head[offset : offset + length]
            if offset >= size - len(tail):
                return tail[offset - (size - len(tail)) :][:length]
            return bytes(min(length, 1 << 20))
        return read_at

    # safetensors header length just over the limit; a zip end record claiming a 4 GiB directory.
    head = struct.pack("<Q", SAFETENSORS_HEADER_LIMIT + 1) + b"{"
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 9, 9, 0xFFFFFFF0, 0, 0)
    assert plan_cuts(sparse(head, eocd), size, min_size=16 * KiB) == []  # type: ignore[arg-type]
    assert sum(requested) < 100 * KiB
    requested.clear()
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 9, 9, ZIP_DIRECTORY_LIMIT + 1, 0, 0)
    assert plan_cuts(sparse(b"", eocd), size, min_size=16 * KiB) == []  # type: ignore[arg-type]
    assert sum(requested) < 100 * KiB


def test_deeply_nested_header_falls_back() -> None:
    raw = b"{" + b'"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    data = struct.pack("<Q", len(raw)) + raw + xof("x", 40 * KiB)
    assert len(raw) <= SAFETENSORS_HEADER_LIMIT
    assert plan_cuts(lambda o, n: data[o : o + n], len(data), min_size=16 * KiB) == []


@pytest.mark.parametrize("member_size", [0, 1, 5 * KiB, 70 * KiB])
def test_zip_members_start_segments(member_size: int) -> None:
    data = a_zip([("archive/data.pkl", xof("pkl", 300)),
                  ("archive/data/0", xof("t0", 30 * KiB)),
                  ("archive/data/1", xof("t1", member_size)),
                  ("archive/data/2", xof("t2", 50 * KiB))])
    check(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("archive/data/2")
    local = struct.unpack_from("<4s2B4HL2L2H", data, info.header_offset)
    start = info.header_offset + 30 + local[10] + local[11]
    cuts = cuts_of(data, SMALL_T)
    assert start in cuts and start + 50 * KiB in cuts


class _Unseekable(io.RawIOBase):
    """Makes zipfile write data descriptors (CRC after the data), as streaming writers do."""

    def __init__(self) -> None:
        self.out = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        data = bytes(b)  # type: ignore[call-overload]
        self.out += data
        return len(data)


def streamed_zip(members: list[tuple[str, bytes]]) -> bytes:
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            with archive.open(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), "w") as f:
                f.write(data)
    return bytes(sink.out)


@pytest.mark.parametrize("write", ["seekable", "streamed"])
def test_changed_zip_member_does_not_drag_its_small_neighbours(write: str) -> None:
    """The member's local header (seekable writer) or data descriptor (streaming writer) holds
    its CRC: it must go with the member, not into a group with unrelated small neighbours
    (torch.save writes storages in the string order of their keys)."""
    def members(tuned: str) -> list[tuple[str, bytes]]:
        out = [("archive/data.pkl", xof("pkl", 700))]
        for i in range(6):
            out += [(f"archive/data/{i}0", xof(f"small{i}", 300)),
                    (f"archive/data/{i}1", xof(f"adapter{i}{tuned}", 3 * KiB)),
                    (f"archive/data/{i}2", xof(f"small2{i}", 200)),
                    (f"archive/data/{i}3", xof(f"weight{i}", 40 * KiB))]
        return out

    make = a_zip if write == "seekable" else streamed_zip
    base, tuned = make(members("")), make(members("t"))
    assert zipfile.ZipFile(io.BytesIO(tuned)).testzip() is None
    old = {chunk_id(c) for _, c in iter_buffer_chunks(base, SMALL_T)}
    new = sum(len(c) for _, c in iter_buffer_chunks(tuned, SMALL_T) if chunk_id(c) not in old)
    changed = 6 * 3 * KiB
    with zipfile.ZipFile(io.BytesIO(tuned)) as archive:
        directory = len(tuned) - archive.start_dir
    assert new <= 1.08 * changed + directory


def test_damaged_member_keeps_the_other_members_boundaries() -> None:
    data = bytearray(TORCH_FILE.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        damaged = archive.getinfo("tensorcuts-torch/data/1").header_offset
    data[damaged : damaged + 4] = b"XXXX"  # an edit that hits one local header
    cuts = cuts_of(bytes(data), DEFAULT_CHUNKER)
    assert damaged in cuts
    # data/5's data start and the directory start are still marks (TORCH_DEFAULT_CUTS).
    assert {493184, 657040} <= set(cuts)
    assert cuts != cuts_of(bytes(data), dataclasses.replace(DEFAULT_CHUNKER,
                                                            tensor_boundaries=False))


def test_torch_file_saved_under_another_name_costs_only_its_headers() -> None:
    """torch.save names every member after the file (``epoch_3/data/17``): a checkpoint saved
    under a new name changes every local header. The unchanged small tensors' data must still
    be reused (measured: 1.32x instead of 1.05x for a LoRA fine-tune when they were not)."""
    def members(prefix: str, tuned: str) -> list[tuple[str, bytes]]:
        out = [(f"{prefix}/data.pkl", xof("pkl", 900))]
        for i in range(6):
            out += [(f"{prefix}/data/{i}{j}", xof(f"small{i}{j}", 2 * KiB)) for j in range(4)]
            out += [(f"{prefix}/data/{i}5", xof(f"adapter{i}{tuned}", 24 * KiB)),
                    (f"{prefix}/data/{i}6", xof(f"weight{i}", 300 * KiB))]
        return out

    base, tuned = a_zip(members("epoch_1", "")), a_zip(members("epoch_2", "t"))
    old = {chunk_id(c) for _, c in iter_buffer_chunks(base, DEFAULT_CHUNKER)}
    new = sum(len(c) for _, c in iter_buffer_chunks(tuned, DEFAULT_CHUNKER)
              if chunk_id(c) not in old)
    with zipfile.ZipFile(io.BytesIO(tuned)) as archive:
        directory = len(tuned) - archive.start_dir
        headers = sum(30 + len(i.filename) + len(i.extra) for i in archive.infolist())
    changed = 6 * 24 * KiB
    assert new <= 1.05 * changed + headers + directory
