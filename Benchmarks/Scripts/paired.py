#!/usr/bin/env python3
"""Paired runs of two builds of the benchmarks, for changes smaller than this machine's noise.

Runs build A and build B alternately (A B, then B A, ...), each time with the same arguments, and
reads one contender's median from each run's table. What moves the whole machine for a minute
(neighbours on the VM, a compilation) moves both runs of a pair alike, so the ratio B / A of each
pair keeps the change and loses most of the noise. Prints every pair and the median ratio with the
range of the pairs.

    Benchmarks/Scripts/paired.py --a before/SyncBridgeBenchmarks --b after/SyncBridgeBenchmarks \\
        --pairs 20 --contender "SyncBridge BlockingPool.run" -- hop --rounds 3 --only BlockingPool.run

Several --contender options read several rows of the same runs.
"""
import argparse
import statistics
import subprocess
import sys


def medians(binary, arguments, contenders):
    output = subprocess.run([binary, *arguments], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        # The first table that has the row (a suite can print the same contender in two tables).
        if len(cells) >= 2 and cells[0] in contenders and cells[0] not in found:
            try:
                found[cells[0]] = float(cells[1])
            except ValueError:
                pass
    missing = [name for name in contenders if name not in found]
    if missing:
        sys.exit(f"{binary}: no row for {missing} in:\n{output}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="the reference build's benchmark binary")
    parser.add_argument("--b", required=True, help="the changed build's benchmark binary")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--contender", action="append", required=True, help="a row of the table, exactly")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the benchmark's arguments")
    options = parser.parse_args()
    arguments = options.arguments[1:] if options.arguments[:1] == ["--"] else options.arguments
    ratios = {name: [] for name in options.contender}
    for pair in range(options.pairs):
        order = [("a", options.a), ("b", options.b)]
        if pair % 2:
            order.reverse()
        figures = {label: medians(binary, arguments, options.contender) for label, binary in order}
        for name in options.contender:
            ratio = figures["b"][name] / figures["a"][name]
            ratios[name].append(ratio)
            print(f"pair {pair + 1}: {name}: A {figures['a'][name]:.0f}, B {figures['b'][name]:.0f}, B/A {ratio:.4f}", flush=True)
    print()
    for name, values in ratios.items():
        print(
            f"{name}: B/A median {statistics.median(values):.4f} "
            f"(range {min(values):.4f}-{max(values):.4f}, quartiles "
            f"{statistics.quantiles(values, n=4)[0]:.4f}-{statistics.quantiles(values, n=4)[2]:.4f}) over {len(values)} pairs"
        )


if __name__ == "__main__":
    main()
