"""Run a command and write its own wall time, peak RSS and CPU seconds as JSON.

    python -I -S benchmarks/measure_child.py RESULT.json -- COMMAND [ARGS...]

Why a separate launcher: Linux counts a process's peak RSS across ``exec``, so a tool started
straight from the benchmark (a Python process of ~100 MiB with numpy and boto3 loaded) would
report at least the benchmark's own size. This launcher is a bare interpreter (``-I -S``, about
10 MiB), and the command is started with ``posix_spawn`` from it, so the peak RSS reported is the
command's own, above a floor of this launcher's size. stdin/stdout/stderr, cwd and environment are
passed through; the exit code is the command's.
"""

import json
import os
import sys
import time


def main() -> int:
    out, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        sys.stderr.write(__doc__ or "")
        return 2
    started = time.monotonic()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as fh:
        json.dump(
            {
                "wall_s": wall,
                "rss_bytes": ru.ru_maxrss * 1024,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "user_s": ru.ru_utime,
                "sys_s": ru.ru_stime,
                "exit_code": code,
            },
            fh,
        )
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main())
