#!/usr/bin/env python3
"""Checks that the code in the guides is the Samples' code.

In README.md, MIGRATION.md and the DocC guide to wrapping a C client, a fenced code block preceded by a line
`<!-- snippet: PATH -->` must match the file PATH (relative to the repository): its non-blank
lines, stripped of indentation, must appear in that file in the same order. A line that is only
`…` stands for lines left out. Exits with status 1 and names every block that drifted.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
marker = re.compile(r"^\s*<!-- snippet: (\S+) -->\s*$")
failures = 0
checked = 0

guides = ["README.md", "MIGRATION.md", "Sources/SyncBridgeSQL/SyncBridgeSQL.docc/WrappingACClient.md"]
for guide in guides:
    lines = (root / guide).read_text().splitlines()
    index = 0
    while index < len(lines):
        found = marker.match(lines[index])
        index += 1
        if not found:
            continue
        source_path = root / found.group(1)
        if not source_path.exists():
            print(f"{guide}:{index}: {found.group(1)} does not exist")
            failures += 1
            continue
        if index >= len(lines) or not lines[index].strip().startswith("```"):
            print(f"{guide}:{index}: the snippet marker is not followed by a code block")
            failures += 1
            continue
        start = index + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith("```"):
            end += 1
        block = [line.strip() for line in lines[start:end] if line.strip() and line.strip() != "…"]
        source = [line.strip() for line in source_path.read_text().splitlines()]
        position = 0
        for line in block:
            try:
                position = source.index(line, position) + 1
            except ValueError:
                print(f"{guide}:{start + 1}: not in {found.group(1)} (in this order): {line}")
                failures += 1
                break
        checked += 1
        index = end + 1

if failures:
    sys.exit(1)
print(f"{checked} snippets in {', '.join(guides)} match the samples")
