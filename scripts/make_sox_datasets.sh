#!/usr/bin/env bash
# Writes the two SoX datasets that tests/tests/pipeline_sox.rs profiles, for longer trainings
# by hand (`fxtwin profile OUTDIR/sox-overdrive/manifest.toml --arch lstm-16 --out ...`):
#
#   OUTDIR/sox-overdrive/  overdrive GAIN 20, GAIN in {10, 20, 25, 30, 40} dB, 25 held out
#   OUTDIR/sox-compand/    compand 0.01,0.1 6:-90,-90,T,T,0,T-T/R 0 -90 0 (soft knee 6 dB,
#                          threshold T dB, ratio R above it), T in {-40, -30, -20},
#                          R in {2, 4, 8}, T=-30 R=4 held out
#
# The dry signal is 24 s of fxtwin's profiling stimulus at 48 kHz: its 20 s music section
# (plucked strings, bars from -33 to -1 dBFS peak) and the 4 s validation passage that follows
# it (a different seed, peaks -9 and -3 dBFS), so the held-out tail of every pair is music the
# model never trained on. The test builds the same signal with dsp::stimulus::generate; the
# files agree up to SoX's 32-bit integer rounding of the dry file (below -180 dBFS).
# Every file is 32-bit float; SoX runs with -D -R (no dither, repeatable).
# Needs sox, python3 and a built fxtwin (the script builds it).
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
fxtwin="${FXTWIN:-$root/target/ci/fxtwin}"
[ -x "$fxtwin" ] || (cd "$root" && cargo build --quiet --profile ci --bin fxtwin)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$fxtwin" stimulus "$tmp/stim.wav" --rate 48000 >/dev/null

# First sample of the music section and the length of it plus the validation passage after it.
read -r start len < <(python3 -c "
import json
layout = json.load(open('$tmp/stim.layout.json'))
i = next(i for i, s in enumerate(layout) if s['kind']['type'] == 'music')
music, after = layout[i], layout[i + 1]
assert after['kind'] == {'type': 'validation', 'copy': 1}, after
print(music['start_samples'], music['len_samples'] + after['len_samples'])")

f32=(-e floating-point -b 32)

# Overdrive: one knob, gain in dB.
od="$out/sox-overdrive"
mkdir -p "$od"
rm -f "$od"/*.wav
sox -D -R "$tmp/stim.wav" "${f32[@]}" "$od/dry.wav" trim "${start}s" "${len}s"
cat > "$od/manifest.toml" <<TOML
# SoX overdrive: sox -D -R dry.wav -e floating-point -b 32 wet.wav overdrive GAIN 20
# Made by scripts/make_sox_datasets.sh.

[device]
name = "SoX overdrive"
sample_rate_hz = 48000

[[knobs]]
name = "gain"
unit = "dB"
min = 0.0
max = 50.0
default = 25.0
taper = "linear"

[validation]
holdout_fraction = 0.15
holdout_knobs = [{ gain = 25.0 }]
TOML
for gain in 10 20 25 30 40; do
    sox -D -R "$od/dry.wav" "${f32[@]}" "$od/wet__gain=$gain.wav" overdrive "$gain" 20
    printf '\n[[pairs]]\ndry = "dry.wav"\nwet = "wet__gain=%s.wav"\nknobs = { gain = %s.0 }\n' \
        "$gain" "$gain" >> "$od/manifest.toml"
done

# Compressor: threshold (dB) and ratio knobs; attack 10 ms, release 100 ms.
cp="$out/sox-compand"
mkdir -p "$cp"
rm -f "$cp"/*.wav
cp "$od/dry.wav" "$cp/dry.wav"
cat > "$cp/manifest.toml" <<TOML
# SoX compand: sox -D -R dry.wav -e floating-point -b 32 wet.wav
#   compand 0.01,0.1 6:-90,-90,T,T,0,T-T/R 0 -90 0
# Made by scripts/make_sox_datasets.sh.

[device]
name = "SoX compand"
sample_rate_hz = 48000

[[knobs]]
name = "threshold"
unit = "dB"
min = -50.0
max = 0.0
default = -30.0
taper = "linear"

[[knobs]]
name = "ratio"
unit = ""
min = 1.0
max = 10.0
default = 4.0
taper = "log"

[validation]
holdout_fraction = 0.15
holdout_knobs = [{ threshold = -30.0, ratio = 4.0 }]
TOML
for threshold in -40 -30 -20; do
    for ratio in 2 4 8; do
        out_db=$(python3 -c "print(repr($threshold - $threshold / $ratio))")
        wet="wet__threshold=${threshold}__ratio=${ratio}.wav"
        sox -D -R "$cp/dry.wav" "${f32[@]}" "$cp/$wet" \
            compand 0.01,0.1 "6:-90,-90,$threshold,$threshold,0,$out_db" 0 -90 0
        printf '\n[[pairs]]\ndry = "dry.wav"\nwet = "%s"\nknobs = { threshold = %s.0, ratio = %s.0 }\n' \
            "$wet" "$threshold" "$ratio" >> "$cp/manifest.toml"
    done
done
echo "wrote $od and $cp"
