"""What ``pip install cpv-checkpoints`` gives a user: a wheel and an sdist that build from this
tree, install, and run ``cpv`` without anything from the source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_and_sdist_build_install_and_run(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "-o", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(out.glob("cpv_checkpoints-*.whl"))
    sdist = next(out.glob("cpv_checkpoints-*.tar.gz"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(meta).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "Name: cpv-checkpoints" in metadata
    assert "cpv = cpv.cli.main:main" in entry
    assert "cpv/py.typed" in names and "cpv/service/workspace.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    with tarfile.open(sdist) as tf:
        assert any(n.endswith("/pyproject.toml") for n in tf.getnames())
    # Install the wheel alone (its dependencies are this test's own) and run it from a folder
    # that is not the checkout, so nothing can come from the source tree.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", "import cpv, sys; print(cpv.__file__); "
                          "from cpv.cli.main import main; sys.argv = ['cpv', '--help']; main()"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(target))
    assert "push" in run.stdout and "docs/" not in run.stdout
