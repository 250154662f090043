#!/usr/bin/env bash
# Reproduces the figures in benchmarks/README.md: about 40 minutes on a 2-core machine.
#   bash benchmarks/run.sh [OUT_DIR]      (JSON results, one file per run)
set -euo pipefail
source "$(dirname "$0")/../deploy/bootstrap.sh"
cd "$STREAMD_ROOT"
out=${1:-benchmarks/results}
mkdir -p "$out"
streamd demo --prepare-only >/dev/null 2>&1
data=$(python -c "from streamd.demo.model import data_dir; print(data_dir())")
cfg="$data/demo/streamd.toml"

# 1. The default model on the 640x480 demo clip: ceiling vs pipeline in 3 alternating rounds,
#    benchmark_app on the same model and shape, decode-only, latency at 80 % load, naive baseline.
streamd bench -c "$cfg" --frames 1500 --baseline --json > "$out/default.json"
# 2. Many sources sharing one compiled model and one request pool.
for n in 4 16; do
  streamd bench -c "$cfg" --frames 1500 --rounds 1 --sources "$n" --json > "$out/sources-$n.json"
done
# 3. The tracker's cost per frame.
streamd bench -c "$cfg" --frames 1500 --rounds 1 --tracking --json > "$out/tracking.json"
# 4. 1080p H.264 (libx264) input: decoding, not inference, bounds the pipeline.
[ -f "$data/demo/people-1080p.mp4" ] || python -m streamd.demo.clip "$data/demo/people-1080p.mp4" --size 1920x1080 --h264
STREAMD_SOURCES__0__URI="$data/demo/people-1080p.mp4" \
  streamd bench -c "$cfg" --frames 1000 --rounds 1 --json > "$out/1080p.json"
# 6. Snapshots: tracking alone vs tracking + snapshots, and the JPEG cost of each.
streamd bench -c "$cfg" --frames 1500 --snapshots --json > "$out/snapshots.json"
# 6b. Recording: tracking alone vs the recording reader and ring vs recording on (real model, then
#     a model that costs nothing, which shows the reader's own cost).
streamd bench -c "$cfg" --frames 1500 --recording --json > "$out/recording.json"
streamd bench -c "$cfg" --frames 4000 --recording --free-model --json > "$out/recording-free.json"
# 7. INT8: quantise on the demo clip, then FP vs INT8 (benchmark_app, pipeline, agreement).
streamd quantize -c "$cfg" --out "$data/int8" > "$out/quantize.json"
int8="$data/int8/ssdlite_mobilenet_v2_person-int8.xml"
streamd bench -c "$cfg" --frames 1500 --compare-int8 "$int8" --json > "$out/int8.json"
# 8. Motion gating: 8 cameras at 15 fps on a mostly empty scene, FP and INT8, gated or not.
streamd bench -c "$cfg" --motion 30 --compare-int8 "$int8" --json > "$out/motion.json"
# 9. Worker processes: the service as `streamd run` starts it, 1 worker against 2 on 2 sources, with
#    the real model and with a detector that costs nothing (streamd's own cost); then 16 sources.
streamd bench -c "$cfg" --workers 2 --sources 2 --rounds 3 --seconds 20 --json > "$out/workers.json"
streamd bench -c "$cfg" --workers 2 --sources 2 --rounds 3 --seconds 20 --free-model --json > "$out/workers-free.json"
streamd bench -c "$cfg" --workers 2 --sources 16 --rounds 1 --seconds 20 --json > "$out/workers-16.json"
# 10. streamd's own cost: a detector that costs nothing, one source.
streamd bench -c "$cfg" --free-model --frames 6000 --rounds 3 --json > "$out/free-model.json"
# 11. Where a source decodes (#36): a decoder process against the reader thread; FFmpeg threads.
python benchmarks/decode_in.py --rounds 3 --frames 4000 --real-frames 1500 > "$out/decode-in.json"
python benchmarks/decoder_threads.py --rounds 3 > "$out/decoder-threads.json"
# 12. streamd's threads per frame: CPU and wake-ups, real model then free model (text).
python benchmarks/wakeups.py > "$out/wakeups.txt"
python benchmarks/wakeups.py --free > "$out/wakeups-free.txt"
# 5. Ten minutes at full load: RSS must stay flat.
streamd bench -c "$cfg" --soak 600 --json > "$out/soak.json"
echo "results in $out" >&2
