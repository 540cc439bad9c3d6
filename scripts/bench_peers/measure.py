"""One engine stage as its own process, measured: wall time, CPU seconds (user + system of the
process and every descendant it waited for, a JVM included) and peak resident memory.

The stage is started by this file run as a small launcher process, not by the driver: Linux
counts the memory high-water mark of the address space a process replaced at exec into its
ru_maxrss, so a stage started straight from the driver (which holds comparison results) would
inherit the driver's peak. The launcher is a bare interpreter of a few megabytes.

    python -S -E measure.py LOG_PATH ARGV...   prints {"wall": .., "cpu": .., "peak_mb": .., "exit": ..}
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass
class Measured:
    wall: float  # seconds
    cpu: float  # seconds, user + system
    peak_mb: float  # largest resident set of the process or a waited-for descendant


class StageFailed(Exception):
    pass


def run(argv: list, cwd: str, env: dict, log_path: str) -> Measured:
    """Runs `argv` to completion through the launcher; its output goes to `log_path`. Fails
    naming the log's tail."""
    launcher = [sys.executable, "-S", "-E", os.path.abspath(__file__), log_path, *argv]
    done = subprocess.run(launcher, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise StageFailed(f"the launcher of {' '.join(argv)} failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    if result["exit"] != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise StageFailed(f"{' '.join(argv)} exited {result['exit']}; "
                          f"its output ({log_path}) ends:\n{tail}")
    return Measured(wall=result["wall"], cpu=result["cpu"], peak_mb=result["peak_mb"])


def launch(log_path: str, argv: list) -> dict:
    with open(log_path, "w") as log:
        started = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
        ])
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
    # ru_maxrss is in kilobytes on Linux.
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status)}


if __name__ == "__main__":
    print(json.dumps(launch(sys.argv[1], sys.argv[2:])))
