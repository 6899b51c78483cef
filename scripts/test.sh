#!/usr/bin/env bash
# Runs Warden's test suite: unit, property and integration tests, including
# `warden replay` on the committed replay-data with its detection figures.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked "$@"
