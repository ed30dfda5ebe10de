#!/usr/bin/env bash
# The README's main job: the whole cpv story with the real `cpv` command on the embedded local
# store (no cloud account needed). It prints each command and its output:
#
#   init -> push a generated 256 MiB checkpoint (+ a small data set) and tag v0.1
#   -> fine-tune a tenth of it -> push again and tag v0.2 (see how little is uploaded)
#   -> versions with metrics, diff -> check out v0.1 -> verify every byte
#   -> a "second machine" clones the Git remote and pulls v0.1.
#
# Usage: bash scripts/demo.sh            (CPV_DEMO_SIZE_MIB=64 for a smaller checkpoint,
#                                         CPV_DEMO_DIR=path to keep the files afterwards)
set -euo pipefail

SIZE_MIB="${CPV_DEMO_SIZE_MIB:-256}"
if [[ -n "${CPV_DEMO_DIR:-}" ]]; then
    DEMO="$CPV_DEMO_DIR"
    rm -rf "$DEMO"
    mkdir -p "$DEMO"
else
    DEMO="$(mktemp -d "${TMPDIR:-/tmp}/cpv-demo.XXXXXX")"
    trap 'rm -rf "$DEMO"' EXIT
fi
DEMO="$(cd "$DEMO" && pwd)"
PY="${PYTHON:-python}"
if command -v cpv >/dev/null 2>&1; then CPV=(cpv); else CPV=("$PY" -m cpv); fi

# A fresh machine may have no Git identity; cpv records versions with one.
if [[ -z "$(git config user.name || true)" ]]; then
    export GIT_AUTHOR_NAME="cpv demo" GIT_COMMITTER_NAME="cpv demo"
fi
if [[ -z "$(git config user.email || true)" ]]; then
    export GIT_AUTHOR_EMAIL="demo@example.com" GIT_COMMITTER_EMAIL="demo@example.com"
fi
# This machine's cache (index copy, stat cache) stays inside the demo folder.
export CPV_CACHE_DIR="$DEMO/cache-machine-1"

step() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
show() {  # the command line as one would type it
    local out="$" arg
    for arg in "$@"; do
        if [[ "$arg" =~ [[:space:]] ]]; then out+=" \"$arg\""; else out+=" $arg"; fi
    done
    printf '%s\n' "$out"
}
run() { show "$@"; "$@"; }
cpv() { show cpv "$@"; command "${CPV[@]}" "$@"; }

step "A bare Git remote (your Bitbucket/GitHub repository) and a shared store folder"
run git init -q --bare "$DEMO/remote.git"
git -C "$DEMO/remote.git" symbolic-ref HEAD refs/heads/main
cd "$DEMO"

step "Create the workspace"
cpv init ws --team AI-Demo --model demo-model --store "$DEMO/store" --remote "$DEMO/remote.git"
cd ws

step "Training writes a ${SIZE_MIB} MiB safetensors-like checkpoint and a small data set"
"$PY" - "$SIZE_MIB" <<'EOF'
import json, os, struct, sys
from pathlib import Path
size = int(sys.argv[1]) * 1024 * 1024
tensors, left = [], size
while left > 0:                      # tensors of 4 MiB, like the layers of a model
    tensors.append(min(left, 4 * 1024 * 1024)); left -= tensors[-1]
header, offset = {}, 0
for i, n in enumerate(tensors):
    header[f"layers.{i}.weight"] = {"dtype": "F32", "shape": [n // 4], "data_offsets": [offset, offset + n]}
    offset += n
raw = json.dumps(header).encode()
with open("model/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw)
    for n in tensors:
        f.write(os.urandom(n))
Path("model/config.json").write_text(json.dumps({"hidden_size": 4096, "layers": len(tensors)}))
for split, count in (("train", 200), ("validation", 40), ("test", 40)):
    for i in range(count):
        Path(f"data/{split}/sample-{i:04d}.txt").write_text(f"{split} sample {i}\n" * 20)
EOF
run ls -l model
sha_v1="$(sha256sum model/model.safetensors | cut -d' ' -f1)"

step "Push model and data, record metrics, tag v0.1 (and data-v0.1)"
cpv push -m "first checkpoint" --metric loss=0.52 --metric accuracy=0.81 --tag

step "Fine-tuning rewrites a tenth of the tensors in place"
"$PY" - <<'EOF'
import os, struct
with open("model/model.safetensors", "r+b") as f:
    head = struct.unpack("<Q", f.read(8))[0] + 8
    size = os.fstat(f.fileno()).st_size
    tensor = 4 * 1024 * 1024
    count = max(1, (size - head) // tensor // 10)
    step = max(1, ((size - head) // tensor) // count)
    for i in range(count):
        f.seek(head + i * step * tensor)
        f.write(os.urandom(tensor))
EOF
cpv status

step "Push again: only the changed chunks are uploaded"
cpv push model -m "fine-tuned on more data" --metric loss=0.31 --metric accuracy=0.88 --tag

step "Versions, metrics and what changed"
cpv versions
cpv diff v0.1 v0.2

step "Check out the first version (a new commit; the history is kept)"
cpv checkout v0.1
sha_now="$(sha256sum model/model.safetensors | cut -d' ' -f1)"
if [[ "$sha_now" == "$sha_v1" ]]; then
    echo "model/model.safetensors is byte-identical to v0.1 (sha256 ${sha_v1:0:16}...)"
else
    echo "ERROR: the checked-out file differs from v0.1" >&2
    exit 1
fi

step "Verify every byte of every version in the store"
cpv verify --all --deep

step "A second machine: clone the Git remote and pull v0.1 (bytes come from the store)"
export CPV_CACHE_DIR="$DEMO/cache-machine-2"
cd "$DEMO"
run git clone -q "$DEMO/remote.git" second-machine
cd second-machine
cpv pull v0.1
sha_2="$(sha256sum model/model.safetensors | cut -d' ' -f1)"
[[ "$sha_2" == "$sha_v1" ]] && echo "second machine has v0.1, byte-identical"
cpv versions

step "Done"
echo "store: $(du -sh "$DEMO/store" | cut -f1) for two versions of a ${SIZE_MIB} MiB checkpoint"
