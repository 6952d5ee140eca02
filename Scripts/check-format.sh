#!/usr/bin/env bash
# Fails when a Swift file of the repository is not formatted as .swift-format says (the
# swift-format that ships with the toolchain). To format: swift format --in-place --recursive
# --parallel <the same paths>.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Package.swift Sources Plugins Tests Samples/Package.swift Samples/Sources Samples/Tests Benchmarks/Package.swift Benchmarks/Sources)
swift format lint --strict --recursive --parallel "${paths[@]}"
echo "format: every Swift file is formatted as .swift-format says"
