"""Status and the no-op push's decision of a workspace that must not be written, with the
folder-by-folder baseline kept in another folder (issue 11, session 5, task G).

    python benchmarks/status_readonly.py learn WORKSPACE DIR   # its baseline, checked by stamps
                                                             # (fingerprints learned) into DIR
    python benchmarks/status_readonly.py noop WORKSPACE DIR    # the no-op push's decision
    python benchmarks/status_readonly.py status WORKSPACE DIR  # what `cpv status` computes

The workspace's baseline store is pointed at DIR, so nothing under WORKSPACE is written (a big
shared workspace can be measured without copying 10^6 files). Time it from outside:
``/usr/bin/time -f "%e s %U u %S s %M KB" python benchmarks/status_readonly.py status WS DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from cpv.service import WorkspaceService  # noqa: E402
from cpv.service.tree import BaselineStore  # noqa: E402
from cpv.workspace import DEFAULT_TRACKS  # noqa: E402


def main(argv: list[str]) -> int:
    what, root, where = argv[0], Path(argv[1]).absolute(), Path(argv[2]).absolute()
    with WorkspaceService.open(root, search_parents=False) as service:
        store = BaselineStore(root)
        store._dir = where  # the redirection this script exists for
        if what == "learn":
            found = BaselineStore(root).load(root / "model")
            if found is None:
                raise SystemExit(f"{root} has no baseline for model/")
            where.mkdir(parents=True, exist_ok=True)
            store.save(root / "model", found)
        service._baselines = store
        if what in ("learn", "noop"):
            track = DEFAULT_TRACKS["model"]
            current = service.ws.history.current_manifest("model", track.name)
            assert current is not None
            decided = service._unchanged_upload(
                track, current, {}, "", {}, publish=False)
            print("no-op decided without the store:", decided is not None)
        else:
            for kind in service.status().kinds:
                print(kind.path, kind.files, "files,", len(kind.changed), "changed,",
                      len(kind.hidden), "hidden")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
