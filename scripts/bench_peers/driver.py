"""bench-peers: boxoffice's bookings_fact job and Gold rebuild against the same work written
idiomatically in DuckDB and Polars (and PySpark with --spark), over one Bronze lake, in
interleaved repetitions. Every engine's Silver and Gold rows must agree with boxoffice's before
any figure is printed. docs/benchmark-peers.md describes it."""

import argparse
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time

import environment
import lake
import measure
import report

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("duckdb", "polars", "spark")
REPORTED = {"silver": "Silver", "gold": "Gold"}
# The measured lake: 2M generated events are about 1.08M bookings and 0.91M payments.
EVENTS_PER_BOOKING = 1.86
DEFAULT_EVENTS = 2_000_000
SMALL_EVENTS = 20_000
# Simulated time the events span: 2M events at boxoffice bench's 10,000/s; hours with --late.
SPAN = 200.0
LATE_SPAN = 3 * 3600.0
LATE_SHARE = 0.05
RELEASE = os.path.join(environment.cache_root(), "target-release", "x86_64-unknown-linux-gnu",
                       "release", "boxoffice")


def parse(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench-peers",
        description="Benchmark boxoffice's Silver join and Gold rebuild against DuckDB, Polars "
                    "(and PySpark) doing the same work on the same Bronze lake; every engine's "
                    "rows must agree before any figure is printed.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--events", type=int, help=f"events to generate (default {DEFAULT_EVENTS:,})")
    size.add_argument("--bookings", type=int,
                      help=f"about this many bookings (events = {EVENTS_PER_BOOKING} x bookings)")
    size.add_argument("--small", action="store_true", help=f"{SMALL_EVENTS:,} events")
    p.add_argument("--late", action="store_true",
                   help=f"input whose events span {LATE_SPAN / 3600:g} hours with a late-arrival "
                        f"share of {LATE_SHARE}: the watermark drops events into late_events")
    p.add_argument("--late-arrival-share", type=float,
                   help=f"share of events arriving 5-15 minutes late (default 0.01, "
                        f"{LATE_SHARE} with --late)")
    p.add_argument("--span", type=float,
                   help=f"simulated seconds the events cover (default {SPAN:g}, "
                        f"{LATE_SPAN:g} with --late)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    p.add_argument("--lake", help="use this lake's Bronze tables instead of generating one")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--engines", default="duckdb,polars",
                   help="peers to run beside boxoffice (default duckdb,polars)")
    p.add_argument("--spark", action="store_true",
                   help="add PySpark (local[2]; installed on first use; needs Java 17+)")
    p.add_argument("--boxoffice", default=RELEASE, help=f"the binary (default {RELEASE})")
    p.add_argument("--work", default=os.path.join(environment.home(), "work"),
                   help="folder for built lakes and every engine's outputs")
    p.add_argument("--markdown", help="also write the results as Markdown to this file")
    p.add_argument("--stages", choices=("silver,gold", "gold"), default="silver,gold",
                   metavar="{silver,gold | gold}",
                   help="stages to measure (default silver,gold); with gold, each engine's Silver "
                        "is built once, unmeasured, and every repetition reruns its Gold rebuild")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps must be at least 1")
    args.stages = args.stages.split(",")
    engines = [e for e in args.engines.split(",") if e and e != "boxoffice"]
    if args.spark and "spark" not in engines:
        engines.append("spark")
    unknown = [e for e in engines if e not in PEERS]
    if unknown:
        p.error(f"unknown engine {', '.join(unknown)} (known: {', '.join(PEERS)})")
    args.peers = engines
    return args


def log(message: str) -> None:
    print(f"bench-peers: {message}", file=sys.stderr, flush=True)


def input_spec(args) -> lake.Input:
    if args.events:
        events = args.events
    elif args.bookings:
        events = round(args.bookings * EVENTS_PER_BOOKING)
    else:
        events = SMALL_EVENTS if args.small else DEFAULT_EVENTS
    share = args.late_arrival_share
    if share is None:
        share = LATE_SHARE if args.late else 0.01
    span = args.span or (LATE_SPAN if args.late else SPAN)
    return lake.Input(events=events, seed=args.seed, span=span, late_arrival_share=share)


def run_boxoffice(binary: str, bronze: str, work: str, tag: str, stages: list) -> dict:
    """The job on a fresh copy of the Bronze lake, drained, then Gold rebuilt in full; with
    `stages` ["gold"], only the Gold rebuild, over the Silver an earlier run left."""
    folder = os.path.join(work, "boxoffice")
    root = os.path.join(folder, "lake")
    env = lake.clean_env()
    measured = {}
    if "silver" in stages:
        lake.copy_bronze(bronze, root)
        measured["silver"] = measure.run(
            [binary, "--lake", root, "job", "run", "bookings_fact", "--drain", "--yes"], folder,
            env, os.path.join(folder, f"silver-{tag}.log"))
    if "gold" in stages:
        measured["gold"] = measure.run([binary, "--lake", root, "job", "run", "gold", "--full"],
                                       folder, env, os.path.join(folder, f"gold-{tag}.log"))
    return measured


def run_peer(engine: str, bronze: str, work: str, tag: str, stages: list) -> dict:
    """The engine's Silver job, then its Gold rebuild from that Silver, each its own process;
    with `stages` ["gold"], only the Gold rebuild, from the Silver an earlier run left."""
    folder = os.path.join(work, engine)
    silver, gold = os.path.join(folder, "silver"), os.path.join(folder, "gold")
    if "silver" in stages:
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(gold, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    script = os.path.join(HERE, "run_engine.py")
    env = dict(os.environ, PYTHONPATH=HERE)
    if engine == "spark":
        env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    measured = {}
    if "silver" in stages:
        measured["silver"] = measure.run(
            [sys.executable, script, engine, "silver", bronze, silver], folder, env,
            os.path.join(folder, f"silver-{tag}.log"))
    if "gold" in stages:
        measured["gold"] = measure.run([sys.executable, script, engine, "gold", silver, gold],
                                       folder, env, os.path.join(folder, f"gold-{tag}.log"))
    return measured


def run_engine(engine: str, binary: str, bronze: str, work: str, tag: str, stages: list) -> dict:
    if engine == "boxoffice":
        return run_boxoffice(binary, bronze, work, tag, stages)
    return run_peer(engine, bronze, work, tag, stages)


def agreement(peers: list, work: str) -> tuple:
    """Compares every peer's tables with boxoffice's; prints a line per engine and table.
    Returns (all agree, boxoffice's row count per table)."""
    import check

    reference = os.path.join(work, "boxoffice", "lake")
    agree = True
    counts = {}
    print("agreement (first repetition; rows compared as multisets, processing times left out):")
    for engine in peers:
        for v in check.compare(reference, os.path.join(work, engine)):
            name = f"{v.layer}.{v.table}"
            counts[name] = v.reference_rows
            if v.agrees:
                print(f"  agree     {engine:<8} {name:<30} {v.rows:>12,} rows")
                continue
            agree = False
            print(f"  DISAGREE  {engine:<8} {name:<30} {v.rows:>12,} rows, boxoffice "
                  f"{v.reference_rows:,}")
            columns = check.columns_of(v.layer, v.table)
            if v.only_here is not None:
                print(f"    first row only in {engine}: {check.describe(columns, v.only_here)}")
            if v.only_reference is not None:
                print(f"    first row only in boxoffice: "
                      f"{check.describe(columns, v.only_reference)}")
    return agree, counts


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(l.split()[1] for l in f if l.startswith("MemTotal")))
            memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} cores ({model}){memory}"


def versions(binary: str, peers: list) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    names = {"duckdb": "duckdb", "polars": "polars", "spark": "pyspark"}
    parts = [out or "boxoffice"]
    parts += [f"{names[p]} {importlib.metadata.version(names[p])}" for p in peers]
    parts.append(f"deltalake {importlib.metadata.version('deltalake')} (file lists)")
    return ", ".join(parts)


def bronze_rows(root: str) -> dict:
    from deltalake import DeltaTable

    rows = {}
    for table in ("bookings_raw", "payments_raw"):
        actions = DeltaTable(os.path.join(root, "bronze", table)).get_add_actions(flatten=True)
        rows[table] = sum(actions.column("num_records").to_pylist())
    return rows


def main(argv: list) -> int:
    args = parse(argv)
    binary = os.path.abspath(args.boxoffice)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"bench-peers: no boxoffice binary at {binary}: build it (cargo build "
                         "--release) or give --boxoffice PATH")
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    if args.lake:
        bronze = os.path.abspath(args.lake)
        described = f"the Bronze tables of {bronze}"
    else:
        spec = input_spec(args)
        bronze = lake.build(binary, spec, os.path.join(work, "lakes"), log)
        described = (f"`boxoffice generate --seed {spec.seed} -n {spec.events} --rate "
                     f"{spec.rate:g} --late-arrival-share {spec.late_arrival_share:g}` ingested")
    lake.check_bronze(bronze)
    landed = bronze_rows(bronze)
    log(f"Bronze: {landed['bookings_raw']:,} bookings, {landed['payments_raw']:,} payments")
    engines = ["boxoffice"] + args.peers
    results = {e: [] for e in engines}
    load_before = os.getloadavg()
    started = time.time()
    counts = {}
    if "silver" not in args.stages:
        # Gold alone: each engine's Silver once, unmeasured, for every repetition's Gold to read.
        for engine in engines:
            try:
                run_engine(engine, binary, bronze, work, "prepare", ["silver"])
            except measure.StageFailed as failed:
                raise SystemExit(f"bench-peers: {engine} failed: {failed}")
            log(f"{engine}: Silver built once (not measured)")
    for rep in range(args.reps):
        # Interleaved, each repetition starting with the next engine, so no engine always runs
        # first (cold) or last.
        order = engines[rep % len(engines):] + engines[:rep % len(engines)]
        for engine in order:
            tag = f"rep{rep + 1}"
            try:
                measured = run_engine(engine, binary, bronze, work, tag, args.stages)
            except measure.StageFailed as failed:
                raise SystemExit(f"bench-peers: {engine} failed: {failed}")
            results[engine].append(measured)
            times = ", ".join(f"{REPORTED[s]} {m.wall:.2f} s" for s, m in measured.items())
            log(f"repetition {rep + 1}/{args.reps}, {engine}: {times}")
        if rep == 0:
            agree, counts = agreement(args.peers, work)
            if not agree:
                print("bench-peers: the engines' rows disagree (above): no figures are printed "
                      "until every engine computes the same tables", file=sys.stderr)
                return 1
            print(f"agreement: all {len(args.peers)} peers agree with boxoffice on every table")
    load_after = os.getloadavg()
    summary = [
        f"Input: {described}: {landed['bookings_raw']:,} bookings and "
        f"{landed['payments_raw']:,} payments in Bronze; every engine wrote "
        f"{counts.get('silver.bookings_fact', 0):,} fact rows, "
        f"{counts.get('silver.unpaid_bookings', 0):,} unpaid bookings, "
        f"{counts.get('silver.orphan_payments', 0):,} orphan payments, "
        f"{counts.get('silver.late_events', 0):,} late events and the same Gold tables.",
        f"Engines: {versions(binary, args.peers)}.",
        f"Machine: {machine()}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; {args.reps} interleaved repetitions in "
        f"{time.time() - started:.0f} s.",
        f"Command: `scripts/bench-peers {' '.join(argv)}`",
    ]
    print()
    print("\n".join(summary))
    print()
    print(report.text(results, args.stages))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n\n".join(summary) + "\n\n" + report.markdown(results, args.stages))
        log(f"wrote {args.markdown}")
    return 0
