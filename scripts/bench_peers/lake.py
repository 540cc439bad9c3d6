"""The Bronze lake every engine reads: generated and ingested by boxoffice itself, or given.

A built lake is kept under the work folder, named by what made it, and reused by the next run
with the same settings."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

# boxoffice ingest exits 3 when some lines were quarantined (the generator sends a few broken
# bodies on purpose): the valid ones are landed.
INGEST_OK = (0, 3)


@dataclass
class Input:
    """How to generate the benchmark's events."""

    events: int
    seed: int
    span: float  # simulated seconds the events cover
    late_arrival_share: float

    @property
    def rate(self) -> float:
        return max(self.events / self.span, 0.001)

    @property
    def name(self) -> str:
        return (f"bronze-{self.events}-seed{self.seed}-span{self.span:g}"
                f"-late{self.late_arrival_share:g}")


def clean_env() -> dict:
    """The environment for boxoffice: no settings file or lake from the caller's shell."""
    return {k: v for k, v in os.environ.items()
            if k not in ("BOXOFFICE_CONFIG", "BOXOFFICE_LAKE", "RUST_LOG")}


def build(binary: str, spec: Input, lakes: str, log) -> str:
    """The Bronze lake for `spec`, built once under `lakes`; returns the lake's root."""
    folder = os.path.join(lakes, spec.name)
    root = os.path.join(folder, "lake")
    ready = os.path.join(folder, "ready.json")
    if os.path.exists(ready):
        log(f"reusing the Bronze lake {root}")
        return root
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    events = os.path.join(folder, "events.ndjson")
    log(f"generating {spec.events:,} events ({spec.rate:g}/s over {spec.span:g} s, "
        f"late-arrival share {spec.late_arrival_share:g}) ...")
    run([binary, "generate", "--seed", str(spec.seed), "--fast", "-n", str(spec.events),
         "--rate", f"{spec.rate:g}", "--late-arrival-share", f"{spec.late_arrival_share:g}",
         "-o", events], folder, (0,))
    log(f"ingesting them into {root} ...")
    run([binary, "--lake", root, "ingest", events], folder, INGEST_OK)
    os.remove(events)
    with open(ready, "w") as f:
        json.dump(vars(spec), f)
    return root


def run(argv: list, cwd: str, ok: tuple) -> None:
    done = subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"bench-peers: {' '.join(argv)} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-4000:]}")


def check_bronze(root: str) -> None:
    for table in ("bookings_raw", "payments_raw"):
        if not os.path.isdir(os.path.join(root, "bronze", table, "_delta_log")):
            raise SystemExit(f"bench-peers: {root} has no bronze/{table} Delta table: give "
                             "--lake a lake that `boxoffice ingest` or `up` has landed events in")


def copy_bronze(root: str, to: str) -> None:
    """A fresh lake holding only `root`'s Bronze tables (no job state, no Silver or Gold)."""
    shutil.rmtree(to, ignore_errors=True)
    os.makedirs(os.path.join(to, "bronze"))
    for table in ("bookings_raw", "payments_raw", "quarantine"):
        source = os.path.join(root, "bronze", table)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(to, "bronze", table))
