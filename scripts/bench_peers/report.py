"""The results table: per engine and stage, wall time, CPU seconds and peak memory over the
repetitions (min / median / max) and the median's ratio to boxoffice's median."""

import statistics

REFERENCE = "boxoffice"
STAGES = (("silver", "Silver (bookings_fact, drained)"), ("gold", "Gold (full rebuild)"))
MEASURES = (("wall", "wall s", "{:.2f}"), ("cpu", "CPU s", "{:.2f}"),
            ("peak_mb", "peak MB", "{:.0f}"))


def spread(values: list, fmt: str) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(fmt.format(v) for v in (low, mid, high))


def rows(results: dict, stage: str) -> list:
    """One row of cells per engine: name, then per measure its spread and ratio."""
    out = []
    for engine, runs in results.items():
        cells = [engine]
        for key, _, fmt in MEASURES:
            values = [getattr(r[stage], key) for r in runs]
            reference = statistics.median(getattr(r[stage], key) for r in results[REFERENCE])
            ratio = statistics.median(values) / reference if reference > 0 else float("nan")
            cells += [spread(values, fmt), f"{ratio:.2f}"]
        out.append(cells)
    return out


def header() -> list:
    cells = ["engine"]
    for _, name, _ in MEASURES:
        cells += [f"{name} (min / median / max)", "x boxoffice"]
    return cells


def text(results: dict, measured: list) -> str:
    """The tables of the `measured` stages, for a terminal."""
    lines = []
    for stage, title in (s for s in STAGES if s[0] in measured):
        table = [header()] + rows(results, stage)
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines.append(title)
        for r in table:
            lines.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w)
                                          for i, (c, w) in enumerate(zip(r, widths))))
        lines.append("")
    return "\n".join(lines)


def markdown(results: dict, measured: list) -> str:
    """The same tables in Markdown."""
    lines = []
    for stage, title in (s for s in STAGES if s[0] in measured):
        lines += [f"**{title}**", "", "| " + " | ".join(header()) + " |",
                  "|" + "---|" * len(header())]
        lines += ["| " + " | ".join(r) + " |" for r in rows(results, stage)]
        lines.append("")
    return "\n".join(lines)
