#!/usr/bin/env bash
# Rebuilds the bundled demo device in assets/demo/sox-overdrive/ from scratch, byte for byte:
#   dry.wav            12 s of the plucked-string music from fxtwin's profiling stimulus
#   wet__gain=G.wav    the same through SoX's overdrive at gain G dB (colour 20), G = 10..40
#   manifest.toml      the dataset (gain 25 is held out for validation of knob interpolation)
# Needs sox and a built fxtwin (the script builds it). SoX runs with -D -R (no dither,
# repeatable), so reruns give identical files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="$here/sox-overdrive"
fxtwin="${FXTWIN:-$root/target/ci/fxtwin}"
[ -x "$fxtwin" ] || (cd "$root" && cargo build --quiet --profile ci --bin fxtwin)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$fxtwin" stimulus "$tmp/stim.wav" --rate 48000 >/dev/null
# The music section starts 2 829 600 samples (58.95 s) into stimulus version 1.
music_start=$(python3 -c "
import json
layout = json.load(open('$tmp/stim.layout.json'))
print(next(s['start_samples'] for s in layout if s['kind']['type'] == 'music'))")

mkdir -p "$out"
rm -f "$out"/*.wav
sox -D -R "$tmp/stim.wav" -b 16 "$out/dry.wav" trim "${music_start}s" 12
for gain in 10 20 25 30 40; do
    sox -D -R "$out/dry.wav" -b 16 "$out/wet__gain=$gain.wav" overdrive "$gain" 20
done
cat > "$out/manifest.toml" <<TOML
# SoX overdrive (sox -D -R dry.wav wet.wav overdrive GAIN 20), made by ../make_demo.sh.

[device]
name = "SoX overdrive"
sample_rate_hz = 48000

[[knobs]]
name = "gain"
unit = "dB"
min = 0.0
max = 50.0
default = 20.0
taper = "linear"

[validation]
holdout_fraction = 0.15
holdout_knobs = [{ gain = 25.0 }]
TOML
for gain in 10 20 25 30 40; do
    printf '\n[[pairs]]\ndry = "dry.wav"\nwet = "wet__gain=%s.wav"\nknobs = { gain = %s.0 }\n' \
        "$gain" "$gain" >> "$out/manifest.toml"
done
echo "wrote $out"
