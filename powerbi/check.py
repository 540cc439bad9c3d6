#!/usr/bin/env python3
"""Checks the Power Query files under powerbi/. Usage: python3 powerbi/check.py TABLE [TABLE ...]
(the Gold table names; "gold." prefixes and commas are accepted). Standard library only.

Every .pq file: (), [] and {} balance and nest; every string and /* comment is closed.
Every table query file (any .pq but parameters.pq) calls DeltaLake.Table and names its own table,
and no other, in a string ("/<table>", "\\<table>" or "<table>"). Every folder holding table
query files (powerbi/ itself always) holds exactly one per table given. Exits 1 listing problems.
"""
import re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OPENERS = {")": "(", "]": "[", "}": "{"}
STRING = re.compile(r'"((?:[^"]|"")*)"')


def scan(text):
    """(string literals, code outside comments and strings, error or None) for M source."""
    line = lambda at: text.count("\n", 0, at) + 1
    strings, code, stack, i, n = [], [], [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            i = n if text.find("\n", i) < 0 else text.find("\n", i)
        elif text.startswith("/*", i):
            if text.find("*/", i + 2) < 0:
                return strings, "", f"/* comment opened on line {line(i)} is never closed"
            i = text.find("*/", i + 2) + 2
        elif text[i] == '"':  # M doubles a quote to escape it; a backslash is plain text
            string = STRING.match(text, i)
            if not string:
                return strings, "", f"string opened on line {line(i)} is never closed"
            strings.append(string[1].replace('""', '"')); code.append('""'); i = string.end()
        else:
            c = text[i]
            if c in "([{":
                stack.append((c, i))
            elif c in OPENERS and not stack:
                return strings, "", f"'{c}' on line {line(i)} closes nothing"
            elif c in OPENERS and stack[-1][0] != OPENERS[c]:
                return strings, "", f"'{c}' on line {line(i)} does not close '{stack[-1][0]}' of line {line(stack[-1][1])}"
            elif c in OPENERS:
                stack.pop()
            code.append(c); i += 1
    if stack:
        return strings, "", f"'{stack[-1][0]}' opened on line {line(stack[-1][1])} is never closed"
    return strings, "".join(code), None


def main(args):
    tables = {a.split(".")[-1] for arg in args for a in arg.replace(",", " ").split()}
    if not tables:
        sys.exit(__doc__)
    problems, found = [], {ROOT: set()}
    for path in sorted(ROOT.rglob("*.pq")):
        name, stem = path.relative_to(ROOT.parent), path.stem
        strings, code, error = scan(path.read_text(encoding="utf-8"))
        problems += [f"{name}: {error}"] if error else []
        if path.name == "parameters.pq":
            continue
        found.setdefault(path.parent, set()).add(stem)
        named = {re.split(r"[/\\]", s.rstrip("/\\"))[-1] for s in strings} & (tables | {stem})
        if not error and stem not in named:
            problems.append(f"{name}: reads no table '{stem}' (no string ending in /{stem})")
        if named - {stem}:
            problems.append(f"{name}: also names {sorted(named - {stem})}; it must read only '{stem}'")
        if not error and not re.search(r"\bDeltaLake\.Table\s*\(", code):
            problems.append(f"{name}: does not call DeltaLake.Table")
    for folder, stems in sorted(found.items()):
        where = folder.relative_to(ROOT.parent)
        problems += [f"{where}/: no query file for {sorted(tables - stems)}"] if tables - stems else []
        problems += [f"{where}/: query files for tables not given: {sorted(stems - tables)}"] if stems - tables else []
    if problems:
        sys.exit("powerbi/check.py found problems:\n  " + "\n  ".join(problems))
    print(f"powerbi: {sum(map(len, found.values()))} table queries in {len(found)} folders match {len(tables)} tables")


if __name__ == "__main__":
    main(sys.argv[1:])
