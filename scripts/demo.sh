#!/usr/bin/env bash
# Profiles the bundled demo device (SoX overdrive recorded at four gain settings): checks the
# recordings, trains a knob-conditioned LSTM for at most three minutes, evaluates it, and
# prints its metrics. The model and report land in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
fxtwin_need_packages
cargo run --quiet --profile ci --bin fxtwin -- profile assets/demo/sox-overdrive/manifest.toml \
    --arch lstm-16 --out out/demo --max-minutes 3 "$@"
