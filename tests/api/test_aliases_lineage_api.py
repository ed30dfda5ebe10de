"""The seed API reads and sets aliases and returns lineage and params: real Git, a real bare
remote, the embedded local store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cpv import CPVConfig, DataCheckpointsManage, ModelsCheckpointsManage
from cpv.errors import InvalidAliasError
from tests.api.test_facade import write_data, write_model


def test_aliases_and_lineage_through_the_seed_api(
    tmp_path: Path, local_config: CPVConfig, bare_remote: str,
) -> None:
    ws = tmp_path / "whisper"
    mcm = ModelsCheckpointsManage("AI-Convo", "whisper", workspace=ws, config=local_config)
    mcm.import_model_init(remote_url=bare_remote)
    dcm = DataCheckpointsManage("AI-Convo", "whisper", workspace=ws, config=local_config)
    write_data(ws)
    dcm.upload_data_checkpoint()
    data_tag = dcm.tag_data_checkpoint()
    write_model(ws, 1, size=100_000)
    mcm.upload_model_checkpoint(params={"lr": "3e-4", "epochs": "3"})
    tag = mcm.tag_model_checkpoint()

    meta = mcm.get_model_metadata(tag)
    assert meta["params"] == {"epochs": "3", "lr": "3e-4"}
    assert meta["lineage"]["data_tag"] == data_tag == "data-v0.1"
    assert meta["lineage"]["data_snapshot_id"] == dcm.get_data_metadata(data_tag)["snapshot_id"]

    assert mcm.set_alias("production", tag, message="first release") == "v0.1"
    assert mcm.read_alias("production") == "v0.1"
    assert mcm.read_aliases() == {"production": "v0.1"}
    assert mcm.download_model_checkpoint("production").tag == "v0.1"
    with pytest.raises(InvalidAliasError):
        mcm.set_alias("v0.1", tag)
    mcm.delete_alias("production", message="retired")
    assert mcm.read_aliases() == {}
    with pytest.raises(InvalidAliasError):
        mcm.read_alias("production")
    # Every move reached the remote with the same push as the versions.
    log = subprocess.run(["git", "--git-dir", bare_remote.removeprefix("file://"), "log",
                          "--format=%s", "main", "--", ".cpv/aliases/production.json"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert log == ["cpv: alias production deleted", "cpv: alias production -> v0.1"]
    mcm.close()
    dcm.close()
