#!/usr/bin/env bash
# Image decoders for the data pipeline (issue 11; docs/BENCHMARKS.md, "Image decoders"): StbImageSharp,
# SkiaSharp and NetVips (libvips), each decoding 500×375 JPEGs to 8-bit RGB, resizing the shorter side to
# 224 and centre-cropping 224×224, with 1 and 2 threads; then the feature probe (formats, header-only
# size reads, EXIF orientation, ldd of the native libraries).
#
#   bench/decoders.sh                      # build, make the images once, probe, run with 1 and 2 threads
#   RUNS=9 THREADS="2" bench/decoders.sh   # more runs, one thread count
#   DIR=/data/x N=200 bench/decoders.sh    # elsewhere, fewer images
#
# Idempotent: the images are remade only when absent, incomplete, or made by another version of the
# generator (bench/decoders/Synth.cs, checked by hash). Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DIR:-/tmp/updp-decoders}
n=${N:-1000}
runs=${RUNS:-5}
threads=${THREADS:-"1 2"}

out=bench/decoders/bin/Release/net10.0/linux-x64
dotnet build bench/decoders/DecoderBench.csproj -c Release --nologo -v quiet
bin=$out/DecoderBench

echo "== native libraries (ldd)"
for so in "$out"/*.so*; do
  if ldd "$so" | grep -q 'not found'; then
    echo "$(basename "$so"): MISSING $(ldd "$so" | grep 'not found' | tr -s ' \t\n' ' ')"
  else
    echo "$(basename "$so"): all dependencies found"
  fi
done

stamp="$n $(sha256sum bench/decoders/Synth.cs | cut -d' ' -f1)"
if [ "$(cat "$dir/.stamp" 2>/dev/null || true)" != "$stamp" ] \
   || [ "$(find "$dir" -maxdepth 1 -name 'img_*.jpg' | wc -l)" -ne "$n" ]; then
  rm -rf "$dir"
  "$bin" make "$dir" "$n"
  echo "$stamp" > "$dir/.stamp"
else
  echo "== $n images already in $dir"
fi

echo "== load before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== feature probe"
"$bin" probe "$dir-probe"
for t in $threads; do
  echo "== run, $t thread(s)"
  "$bin" run "$dir" --threads "$t" --runs "$runs"
done
