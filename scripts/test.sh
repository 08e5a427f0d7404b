#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of every crate,
# all built once in the `ci` profile (optimised, debug assertions on).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
fxtwin_need_packages sox
cargo fmt --all -- --check
cargo clippy --profile ci --workspace --all-targets -- -D warnings
cargo test --profile ci --workspace
