"""Real-training checkpoints: what a push uploads for each kind of fine-tune, old rule vs new.

    python benchmarks/finetune_real.py [--reps 3] [--layers 8] [--dim 512] [--out DIR]

A small GPT-style transformer (default ~34M parameters: 8 layers, width 512, vocabulary 8192;
built from its config, nothing downloaded) is trained a few steps with Adam on CPU from random
tokens, and checkpointed as safetensors and as ``torch.save`` (zip) after each variant:

- ``base``: the starting checkpoint (pushed first, into an empty store);
- ``full``: every parameter trained (every large tensor changes as a whole);
- ``frozen``: embeddings and all but the last two blocks frozen (a partly frozen fine-tune);
- ``lora``: rank-12 LoRA adapters on q and v of every block, trained, saved in the same state
  dict as the frozen base (32 small tensors inserted among the base tensors);
- ``lora-next``: the same LoRA run two steps later (only the 32 adapters changed);
- ``scattered``: the base file with 1 MiB regions overwritten at random offsets until 10 % of
  its bytes changed (not tensor-aligned: what an in-place edit or a partial write does).

Each repetition pushes ``base`` and then every variant, in this order, into a fresh store on one
SeaweedFS server, once with the old cutting rule (plain FastCDC, what stores created before the
``tensor-boundaries`` feature use) and once with the new rule (:data:`DEFAULT_CHUNKER`), the
order alternating between repetitions; then ``verify --deep`` of the base snapshot. "changed" is
the bytes of the tensors that are new or differ from the previous checkpoint (for ``scattered``:
the overwritten bytes); "uploaded" is every byte cpv sent to the server (packs, index, snapshot).
Pushes run in this process through the engine API (the byte counts are exact; times include no
interpreter start-up). Prints a Markdown table; ``--out`` also gets ``finetune_real.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from server import BenchServer  # noqa: E402
from torch import nn  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

from cpv.engine import DEFAULT_CHUNKER, Repository, push, verify  # noqa: E402
from cpv.engine.chunking import iter_buffer_chunks  # noqa: E402
from cpv.engine.hashing import chunk_id  # noqa: E402
from cpv.engine.tensorcuts import group_floor, plan_cuts  # noqa: E402
from cpv.store.s3 import S3Store  # noqa: E402

MiB = 1024 * 1024
RULES = {
    "old": dataclasses.replace(DEFAULT_CHUNKER, tensor_boundaries=False),
    "new": DEFAULT_CHUNKER,
}
VARIANTS = ("full", "frozen", "lora", "lora-next", "scattered")
FORMATS = ("safetensors", "pt")


# ------------------------------------------------------------------------------- the model

class LoRALinear(nn.Linear):  # type: ignore[misc,unused-ignore]  # Any without torch
    """A Linear whose state dict gains ``lora_A``/``lora_B`` next to ``weight`` and ``bias``."""

    def add_lora(self, rank: int) -> None:
        self.lora_A = nn.Parameter(torch.randn(rank, self.in_features) * 0.01)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if hasattr(self, "lora_A"):
            out = out + (x @ self.lora_A.t()) @ self.lora_B.t()
        return out


class Block(nn.Module):  # type: ignore[misc,unused-ignore]
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.q, self.k = LoRALinear(dim, dim), LoRALinear(dim, dim)
        self.v, self.o = LoRALinear(dim, dim), LoRALinear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (m(h).view(b, t, self.heads, -1).transpose(1, 2)
                   for m in (self.q, self.k, self.v))
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        out: torch.Tensor = x + self.down(nn.functional.gelu(self.up(self.ln2(x))))
        return out


class TinyGPT(nn.Module):  # type: ignore[misc,unused-ignore]
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(context, dim) * 0.01)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.ln(x))
        return logits


def train(model: TinyGPT, steps: int, seed: int, vocab: int) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, vocab, (8, 129), generator=gen)
        logits = model(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        opt.step()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def make_checkpoints(args: argparse.Namespace) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    vocab = 8192
    model = TinyGPT(vocab, args.dim, args.layers, 8, 128)
    n_params = sum(p.numel() for p in model.parameters())
    train(model, args.steps, 1, vocab)
    base = snapshot(model)
    dicts = {"base": base}

    def fresh() -> TinyGPT:
        m = TinyGPT(vocab, args.dim, args.layers, 8, 128)
        m.load_state_dict(base)
        return m

    full = fresh()
    train(full, args.steps, 2, vocab)
    dicts["full"] = snapshot(full)

    frozen = fresh()
    for module in (frozen.embed, *frozen.blocks[:-2]):
        module.requires_grad_(False)
    frozen.pos.requires_grad_(False)
    train(frozen, args.steps, 3, vocab)
    dicts["frozen"] = snapshot(frozen)

    lora = fresh()
    lora.requires_grad_(False)
    for block in lora.blocks:
        assert isinstance(block, Block)
        for lin in (block.q, block.v):
            lin.add_lora(args.rank)
    train(lora, args.steps, 4, vocab)
    dicts["lora"] = snapshot(lora)
    train(lora, args.steps, 5, vocab)
    dicts["lora-next"] = snapshot(lora)
    return dicts, n_params


def changed_bytes(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> int:
    return sum(
        t.numel() * t.element_size()
        for name, t in new.items()
        if name not in old or not torch.equal(old[name], t)
    )


def save(state: dict[str, torch.Tensor], fmt: str, path: Path) -> None:
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)


def scatter(src: Path, dst: Path, fraction: float, seed: int) -> int:
    """Overwrite 1 MiB regions at random non-overlapping offsets; returns the bytes changed."""
    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    slots = list(range(len(data) // MiB))
    rng.shuffle(slots)
    want = int(len(data) * fraction)
    changed = 0
    for slot in slots:
        if changed >= want:
            break
        at = slot * MiB + rng.randrange(0, MiB // 2)
        length = min(MiB, len(data) - at)
        data[at : at + length] = rng.randbytes(length)
        changed += length
    dst.write_bytes(bytes(data))
    return changed


# ------------------------------------------------------------------------------- floor study

def _chunks(path: Path, floor: int | None) -> dict[bytes, int]:
    """Chunk id -> length for one file: plain FastCDC (None) or tensor segments grouped up to
    ``floor``, each cut by FastCDC (what the tensor-boundaries rule does, floor aside)."""
    data = path.read_bytes()
    plain = RULES["old"]
    view = memoryview(data)
    cuts: list[int] = []
    if floor is not None:
        cuts = plan_cuts(lambda o, n: data[o : o + n], len(data), min_size=plain.min_size,
                         floor=floor)
    out: dict[bytes, int] = {}
    begin = 0
    for end in [*cuts, len(data)]:
        for _, chunk in iter_buffer_chunks(view[begin:end], plain):
            out[chunk_id(chunk)] = len(chunk)
        begin = end
    return out


def floor_study(files: dict[str, dict[str, Path]], changed: dict[str, int]) -> str:
    """New chunk bytes ÷ changed bytes per variant for several grouping floors (in memory)."""
    chosen = group_floor(DEFAULT_CHUNKER.min_size)
    floors: list[tuple[str, int | None]] = [
        ("plain FastCDC (old rule)", None), ("tensors, no grouping", 1),
        ("tensors, group to 1 KiB", 1024), ("tensors, group to 4 KiB", 4 * 1024),
        ("tensors, group to 16 KiB", 16 * 1024),
        ("tensors, group to 64 KiB", 64 * 1024),
        ("tensors, group to 256 KiB (= min_size)", 256 * 1024),
        ("tensors, group to 1 MiB", MiB),
    ]
    lines = ["| format | rule | chunks in base | " + " | ".join(VARIANTS) + " |",
             "|---|---|---:|" + "---:|" * len(VARIANTS)]
    for fmt in FORMATS:
        for label, floor in floors:
            seen = _chunks(files[fmt]["base"], floor)
            row = [fmt, label + (" **chosen**" if floor == chosen else ""), str(len(seen))]
            for name in VARIANTS:
                ids = _chunks(files[fmt][name], floor)
                new = sum(n for cid, n in ids.items() if cid not in seen)
                seen.update(ids)
                key = f"scattered.{fmt}" if name == "scattered" else name
                row.append(f"{new / changed[key]:.2f}x")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- measuring

def run_rule(server: Any, rule: str, fmt: str, files: dict[str, Path], rep: int,
             scratch: Path) -> dict[str, Any]:
    client = server.server.client()
    prefix = f"ft-{rule}-{fmt}-{rep}-{time.time_ns()}"
    store = S3Store(client=client, bucket=server.server.bucket, prefix=prefix, owns_client=True)
    cache = scratch / f"cache-{prefix}"
    out: dict[str, Any] = {}
    try:
        repo = Repository.init(store, chunker=RULES[rule], cache_dir=cache)
        tree = scratch / f"tree-{prefix}"
        tree.mkdir()
        target = tree / f"model.{fmt}"
        base_id = ""
        for name in ("base", *VARIANTS):
            shutil.copyfile(files[name], target)
            r = push(repo, tree, rehash=True)
            base_id = base_id or r.snapshot_id
            out[name] = {"uploaded": r.uploaded_bytes, "new": r.new_bytes, "seconds": r.seconds,
                         "chunks": r.chunks_new + r.chunks_reused, "requests": r.requests}
        requests = repo.store.request_count
        started = time.monotonic()
        report = verify(repo, snapshot_ids=[base_id], deep=True)
        assert report.ok, report.summary()
        out["verify"] = {"seconds": time.monotonic() - started,
                         "requests": repo.store.request_count - requests,
                         "bytes": report.bytes_read}
        shutil.rmtree(tree)
    finally:
        server.delete_prefix(client, prefix)
        store.close()
        shutil.rmtree(cache, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rank", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2, help="Adam steps per variant")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--floor-study", action="store_true",
                        help="also compare grouping floors for small tensors (in memory)")
    parser.add_argument("--skip-push", action="store_true", help="only the floor study")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cpv-ftreal-") as tmp:
        scratch = Path(tmp)
        t0 = time.monotonic()
        dicts, n_params = make_checkpoints(args)
        train_s = time.monotonic() - t0
        changed = {"full": changed_bytes(dicts["base"], dicts["full"]),
                   "frozen": changed_bytes(dicts["base"], dicts["frozen"]),
                   "lora": changed_bytes(dicts["base"], dicts["lora"]),
                   "lora-next": changed_bytes(dicts["lora"], dicts["lora-next"])}
        files: dict[str, dict[str, Path]] = {}
        sizes: dict[str, int] = {}
        for fmt in FORMATS:
            files[fmt] = {}
            for name, state in dicts.items():
                files[fmt][name] = scratch / f"{name}.{fmt}"
                save(state, fmt, files[fmt][name])
            files[fmt]["scattered"] = scratch / f"scattered.{fmt}"
            changed[f"scattered.{fmt}"] = scatter(files[fmt]["base"], files[fmt]["scattered"],
                                                  0.10, seed=7)
            sizes[fmt] = files[fmt]["base"].stat().st_size
        study = floor_study(files, changed) if args.floor_study else ""
        if study:
            print(study, flush=True)
        runs: list[dict[str, Any]] = []
        server = BenchServer.start(scratch / "server") if not args.skip_push else None
        try:
            for rep in range(args.reps if server else 0):
                order = ("old", "new") if rep % 2 == 0 else ("new", "old")
                runs.extend(
                    {"rep": rep, "rule": rule, "format": fmt,
                     **run_rule(server, rule, fmt, files[fmt], rep, scratch)}
                    for fmt in FORMATS for rule in order
                )
                if args.out:  # what is measured so far survives an interrupted run
                    args.out.mkdir(parents=True, exist_ok=True)
                    (args.out / "partial.json").write_text(json.dumps(
                        {"params": n_params, "sizes": sizes, "changed": changed, "runs": runs,
                         "floor_study": study}, indent=1))
        finally:
            if server is not None:
                server.stop()

    doc = {"params": n_params, "train_seconds": train_s, "sizes": sizes, "changed": changed,
           "runs": runs, "floor_study": study,
           "args": {k: str(v) for k, v in vars(args).items()}}
    table = render(doc) if runs else study
    if runs:
        print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "finetune_real.json").write_text(json.dumps(doc, indent=1))
        (args.out / "finetune_real.md").write_text(table + "\n")
    return 0


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def render(doc: dict[str, Any]) -> str:
    runs = doc["runs"]
    lines = [
        f"{doc['params'] / 1e6:.1f}M parameters; checkpoint {doc['sizes']['safetensors'] / MiB:.1f}"
        f" MiB (safetensors), {doc['sizes']['pt'] / MiB:.1f} MiB (torch.save); "
        f"{len({r['rep'] for r in runs})} repetitions; uploaded bytes are identical in every "
        "repetition, times are median (min-max) on a shared 2-core machine.",
        "",
        "| format | variant | changed | old rule: uploaded | ÷ changed | new rule: uploaded "
        "| ÷ changed | push s old / new |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for fmt in FORMATS:
        for name in ("base", *VARIANTS):
            key = f"scattered.{fmt}" if name == "scattered" else name
            ch = doc["changed"].get(key, doc["sizes"][fmt])
            row = [fmt, name, f"{ch / MiB:.2f} MiB"]
            times = []
            for rule in ("old", "new"):
                sel = [r[name] for r in runs if r["rule"] == rule and r["format"] == fmt]
                up = statistics.median(r["uploaded"] for r in sel)
                row += [f"{up / MiB:.2f} MiB", f"**{up / ch:.2f}x**"]
                times.append(_med([r["seconds"] for r in sel]))
            row.append(" / ".join(times))
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| format | rule | verify --deep of base: s | requests | chunks in base |",
              "|---|---|---|---:|---:|"]
    for fmt in FORMATS:
        for rule in ("old", "new"):
            sel = [r for r in runs if r["rule"] == rule and r["format"] == fmt]
            lines.append(
                f"| {fmt} | {rule} | {_med([r['verify']['seconds'] for r in sel])} | "
                f"{statistics.median(r['verify']['requests'] for r in sel):.0f} | "
                f"{statistics.median(r['base']['chunks'] for r in sel):.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
