"""The benchmark's own virtualenv, with the peer engines pinned to versions on PyPI.

Stdlib only: this runs before the virtualenv exists. Creating or completing it holds a file lock,
so two runs started together (the tests) install once."""

import fcntl
import os
import subprocess
import sys

# The engines and what reads Delta for them; PySpark only with --spark (it needs Java 17+).
BASE = ["duckdb==2.0.1", "polars==2.1.0", "deltalake==1.6.6", "pyarrow==26.0.1"]
SPARK = ["pyspark==4.3.0"]


def cache_root() -> str:
    return os.environ.get("BOXOFFICE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "boxoffice")


def home() -> str:
    """`${BOXOFFICE_CACHE:-~/.cache/boxoffice}/peers`: the virtualenv, built lakes, outputs."""
    return os.path.join(cache_root(), "peers")


def python() -> str:
    return os.path.join(home(), "venv", "bin", "python")


def ensure(spark: bool) -> str:
    """Creates the virtualenv and installs what is missing; returns its python."""
    wanted = BASE + (SPARK if spark else [])
    venv = os.path.join(home(), "venv")
    stamp = os.path.join(venv, "installed.txt")
    os.makedirs(home(), exist_ok=True)
    with open(os.path.join(home(), "venv.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = set()
        if os.path.exists(stamp):
            with open(stamp) as f:
                installed = set(f.read().split())
        if not os.path.exists(python()):
            print(f"bench-peers: creating a virtualenv in {venv}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            installed = set()
        missing = [r for r in wanted if r not in installed]
        if missing:
            print(f"bench-peers: installing {' '.join(missing)} from PyPI", file=sys.stderr)
            subprocess.run([python(), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", *missing], check=True)
            with open(stamp, "w") as f:
                f.write("\n".join(sorted(installed | set(missing))) + "\n")
    return python()


def inside() -> bool:
    """Whether this process runs the virtualenv's python."""
    return os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(home(), "venv"))
