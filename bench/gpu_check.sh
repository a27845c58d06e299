#!/usr/bin/env bash
# GPU readiness of drope training, one prepared script, <= 8 minutes (issue 13, part 5).
#
#   bash bench/gpu_check.sh                     # a machine with NVIDIA GPUs (all visible GPUs are used)
#   GPU_CHECK_CPU=1 bash bench/gpu_check.sh     # degraded and tiny, on the CPU: checks the script's logic
#
# Stages (each under its own time limit, inside a total budget of GPU_CHECK_BUDGET_S: 460 s, 170 s on CPU):
#   env     torch / drope importable; installs only what is missing (torch==2.13.0 pinned; a CUDA
#           build that is already installed is kept), drope itself with --no-deps
#   data    drope-generate -> drope-data cache (generated WOMD-format scenes)
#   train   torchrun over all visible GPUs: drope_base, bf16 autocast (precision=bf16), the streaming loader with data.num_workers workers per rank; prints the loss
#           curve, scenes/s and peak GPU memory per rank
#   export  drope-export of the checkpoint to ONNX (with its built-in ONNX Runtime verification)
#   sim     drope-bench sim --learned-only with the checkpoint on the GPU: 32 learned rollouts of the
#           WOMD sample (else a generated scene) batched (all worlds per forward pass) vs one at a time
#   loader  drope-bench train-data loader scenes/s and the epoch projection, fed the measured
#           GPU scenes/s (only if the budget leaves time)
# Everything is written under $OUT (default: a new /tmp/gpu_check.* folder): logs, metrics.csv,
# the checkpoint, model.onnx, sim_learned.json, summary.json and summary.md.
# Knobs: GPU_CHECK_STEPS, GPU_CHECK_BATCH (per rank), GPU_CHECK_SCENES, GPU_CHECK_MODEL,
# GPU_CHECK_WORKERS (per rank), GPU_CHECK_NPROC (ranks), GPU_CHECK_BUDGET_S, GPU_CHECK_REUSE_DATA=1, PY.
set -uo pipefail

PY=${PY:-python}
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$OUT"
START=$(date +%s)
CPU_MODE=${GPU_CHECK_CPU:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-$([[ "$CPU_MODE" == 1 ]] && echo 170 || echo 460)}
CORES=$(nproc)
LOG="$OUT/gpu_check.log"
: > "$LOG"
declare -A STATUS SECONDS_OF

log() { echo "[gpu_check $(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
# run_stage NAME MAX_SECONDS CMD...: runs CMD under min(MAX, time left), output to $OUT/NAME.log
run_stage() {
  local name=$1 max=$2; shift 2
  [[ "$CPU_MODE" == 1 ]] && max=$BUDGET  # the dry run's stages share the one budget: a busy CPU is slow
  local lim; lim=$(left); (( lim > max )) && lim=$max
  if (( lim < 10 )); then log "$name: skipped (budget spent)"; STATUS[$name]=skipped; return 1; fi
  log "$name: start (limit ${lim}s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$lim" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  SECONDS_OF[$name]=$(($(date +%s) - t0))
  if (( rc == 0 )); then STATUS[$name]=ok; else STATUS[$name]="failed rc=$rc"; fi
  log "$name: ${STATUS[$name]} in ${SECONDS_OF[$name]}s (log: $OUT/$name.log)"
  (( rc != 0 )) && tail -n 25 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$LOG"
  return $rc
}

# ---- env ---------------------------------------------------------------------------------------
env_stage() {
  set -e
  # find_spec only: importing onnxscript/tensorboard/... here would cost more than the whole check
  local missing
  missing=$("$PY" - <<'EOF'
import importlib.util as u
need = {"torch": "torch==2.13.0", "drope.sim": "DROPE", "waymo_open_dataset": "WAYMO", "hydra": "hydra-core",
        "omegaconf": "omegaconf", "google.protobuf": "protobuf", "crc32c": "crc32c", "tqdm": "tqdm",
        "tensorboard": "tensorboard", "onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime",
        "shapely": "shapely", "scipy": "scipy", "psutil": "psutil"}
def present(m):
    try:
        return u.find_spec(m) is not None
    except (ImportError, ValueError):
        return False
print(" ".join(pkg for m, pkg in need.items() if not present(m)))
EOF
)
  # torch first and pinned: a CUDA build that is already installed is kept as it is
  if [[ " $missing " == *" torch==2.13.0 "* ]]; then echo "pip install torch==2.13.0"; "$PY" -m pip install -q torch==2.13.0; fi
  if [[ " $missing " == *" DROPE "* ]]; then
    echo "drope not importable: pip install --no-deps -e ."
    "$PY" -m pip install -q --no-deps --no-build-isolation -e .
  fi
  if [[ " $missing " == *" WAYMO "* ]]; then "$PY" -m pip install -q --no-deps waymo-open-dataset-tf-2-12-0==1.6.7; fi
  local rest=""
  for m in $missing; do [[ "$m" == torch==* || "$m" == DROPE || "$m" == WAYMO ]] || rest+="$m "; done
  if [[ -n "$rest" ]]; then echo "pip install $rest"; "$PY" -m pip install -q $rest; fi
  "$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name} {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF
  command -v nvidia-smi > /dev/null && nvidia-smi -L || true
}
export PY OUT CORES
export -f env_stage
run_stage env 240 bash -c env_stage || { log "environment not ready; see $OUT/env.log"; exit 1; }

if [[ "$CPU_MODE" == 1 ]]; then
  NPROC=${GPU_CHECK_NPROC:-1}; DEVICE=cpu; MODEL=${GPU_CHECK_MODEL:-drope_small}
  STEPS=${GPU_CHECK_STEPS:-6}; BATCH=${GPU_CHECK_BATCH:-2}; SCENES=${GPU_CHECK_SCENES:-8}
  WORKERS=${GPU_CHECK_WORKERS:-1}; LOG_EVERY=2
  log "CPU mode (GPU_CHECK_CPU=1): degraded and tiny; bf16 autocast is CUDA-only and stays off"
else
  NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  if (( NGPU < 1 )); then log "no CUDA device visible (GPU_CHECK_CPU=1 runs the CPU dry run)"; exit 1; fi
  NPROC=${GPU_CHECK_NPROC:-$NGPU}; DEVICE=auto; MODEL=${GPU_CHECK_MODEL:-drope_base}
  STEPS=${GPU_CHECK_STEPS:-300}; BATCH=${GPU_CHECK_BATCH:-32}; SCENES=${GPU_CHECK_SCENES:-1024}
  # one core per rank for the training loop, the rest shared by the ranks' loader workers
  W=$(( (CORES - NPROC) / NPROC )); (( W < 1 )) && W=1; (( W > 8 )) && W=8
  WORKERS=${GPU_CHECK_WORKERS:-$W}; LOG_EVERY=10
fi
log "ranks $NPROC, model $MODEL, $STEPS steps x batch $BATCH per rank, $WORKERS loader workers per rank, $SCENES scenes, $CORES cores"

# ---- data --------------------------------------------------------------------------------------
data_stage() {
  set -e
  rm -rf "$OUT/shards" "$OUT/cache"
  drope-generate out="$OUT/shards" num_scenes="$SCENES" seed=0 workers="$CORES" scenes_per_shard=64
  drope-data cache "$OUT"/shards/*.tfrecord* --out "$OUT/cache" --workers "$CORES" --no-progress
}
export SCENES
export -f data_stage
if [[ "${GPU_CHECK_REUSE_DATA:-0}" == 1 && -d "$OUT/cache" ]]; then
  log "data: reusing $OUT/cache (GPU_CHECK_REUSE_DATA=1)"; STATUS[data]=reused
else
  run_stage data 150 bash -c data_stage || exit 1
fi

# ---- train -------------------------------------------------------------------------------------
cat > "$OUT/train_with_peak.py" <<'EOF'
"""drope-train under torchrun, then this rank's peak GPU memory (torch.cuda.max_memory_allocated)."""
import json, os, sys
import torch
from drope.train.cli import main
rc = main(sys.argv[1:])
peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print("GPU_PEAK " + json.dumps({"rank": int(os.environ.get("RANK", 0)), "peak_gpu_mb": peak}), flush=True)
sys.exit(rc)
EOF
SMI_PID=""
if [[ "$CPU_MODE" != 1 ]] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
    > "$OUT/nvidia_smi.csv" 2>/dev/null &
  SMI_PID=$!
fi
# bf16 autocast on the GPU (TrainConfig.precision); CPU autocast is slow and not what is checked
AMP="precision=bf16"; [[ "$CPU_MODE" == 1 ]] && AMP="precision=fp32"
log "autocast: $AMP"
rm -rf "$OUT/run"
run_stage train 300 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" "$OUT/train_with_peak.py" \
  out="$OUT/run" model="$MODEL" device="$DEVICE" "$AMP" steps="$STEPS" batch_size="$BATCH" \
  "data.train=[$OUT/cache]" "data.val=[]" data.generate_val=0 data.num_workers="$WORKERS" \
  log_every="$LOG_EVERY" val_every=$((STEPS + 1)) ckpt_every=$((STEPS >= 100 ? 100 : STEPS)) progress=false
[[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null

# ---- export ------------------------------------------------------------------------------------
if [[ -f "$OUT/run/last.ckpt" ]]; then
  VARIANTS='[fp16]'; [[ "$CPU_MODE" == 1 ]] && VARIANTS='[]'
  run_stage export 120 drope-export ckpt="$OUT/run/last.ckpt" out="$OUT/model.onnx" "variants=$VARIANTS" verify_scenes=2
else
  log "export: skipped (no checkpoint)"; STATUS[export]=skipped
fi

# ---- sim: learned rollouts from the checkpoint, batched vs one at a time (issue 15's 5x) -----------
if [[ -f "$OUT/run/last.ckpt" ]]; then
  SIM_SCENE=$("$PY" -c 'from drope.samples import womd_sample; p = womd_sample(); print(p if p.exists() else "")' 2>/dev/null)
  [[ -z "$SIM_SCENE" ]] && SIM_SCENE=$(ls "$OUT"/shards/*.tfrecord* 2>/dev/null | head -n 1)  # a generated scene
  SIM_DEVICE=cuda; SIM_ROLLOUTS=32
  [[ "$CPU_MODE" == 1 ]] && { SIM_DEVICE=cpu; SIM_ROLLOUTS=2; }
  run_stage sim 90 drope-bench sim --womd "$SIM_SCENE" --model "$OUT/run/last.ckpt" --device "$SIM_DEVICE" \
    --learned-only --learned-rollouts "$SIM_ROLLOUTS" --json "$OUT/sim_learned.json" \
    && grep -E "learned_(${SIM_ROLLOUTS}_rollouts|batched_speedup|call_ms|device)" "$OUT/sim.log" | tee -a "$LOG"
else
  log "sim: skipped (no checkpoint)"; STATUS[sim]=skipped
fi

# ---- summary (and the loader projection fed the measured GPU rate) ---------------------------------
summarise() {
  "$PY" - "$OUT" "$NPROC" "$MODEL" "$STEPS" "$BATCH" "$WORKERS" "$CPU_MODE" <<'EOF'
import csv, json, re, sys
from pathlib import Path
out, nproc, model = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
steps, batch, workers, cpu = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
s = {"mode": "cpu (degraded)" if cpu else "gpu", "ranks": nproc, "model": model, "steps": steps,
     "batch_per_rank": batch, "loader_workers_per_rank": workers, "bf16_autocast": not cpu}
log = (out / "train.log").read_text(errors="replace") if (out / "train.log").exists() else ""
s["peak_gpu_mb_per_rank"] = {str(d["rank"]): d["peak_gpu_mb"] and round(d["peak_gpu_mb"])
                             for d in map(json.loads, re.findall(r"GPU_PEAK (\{.*\})", log))}
secs, rate = re.findall(r'^ "seconds": ([0-9.e+-]+)', log, re.M), re.findall(r'^ "scenes_per_s": ([0-9.e+-]+)', log, re.M)
if rate:  # drope-train's result JSON (rank 0): training-loop seconds and scenes/s over all ranks
    s["fit_seconds"], s["scenes_per_s"] = float(secs[-1]) if secs else None, float(rate[-1])
    s["scenes_per_s_per_gpu"] = round(s["scenes_per_s"] / nproc, 1)
f = out / "run" / "metrics.csv"
rows = [r for r in csv.DictReader(f.open()) if r["split"] == "train"] if f.exists() else []
s["loss_curve"] = [[int(r["step"]), float(r["loss"]), float(r["min_ade"])] for r in rows]
if rows:  # the last rows' rate excludes start-up (the CSV rate is cumulative from the first step)
    s["scenes_per_s_csv_last"] = float(rows[-1]["scenes_per_s"])
smi = out / "nvidia_smi.csv"
if smi.exists():
    peak = {}
    for line in smi.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            peak[parts[0]] = max(peak.get(parts[0], 0), int(parts[1]))
    s["nvidia_smi_peak_used_mb"] = peak
onnx = out / "model.onnx"
s["onnx"] = {"path": str(onnx), "mb": round(onnx.stat().st_size / 2**20, 1)} if onnx.exists() else None
sim = out / "sim_learned.json"
if sim.exists():  # the sim stage's learned keys (issue 15: batched vs one rollout at a time)
    s["sim_learned"] = {k: v for k, v in json.loads(sim.read_text()).items()
                        if k.startswith("learned_") and k != "learned_call_profile"}
(out / "summary.json").write_text(json.dumps(s, indent=1))
print(f"loss curve (step, loss, minADE): " + ", ".join(f"{a}:{b:.3f}/{c:.2f}" for a, b, c in s["loss_curve"]))
print(f"scenes/s {s.get('scenes_per_s')} ({s.get('scenes_per_s_per_gpu')} per rank), peak GPU MB per rank "
      f"{s['peak_gpu_mb_per_rank']}, nvidia-smi peak {s.get('nvidia_smi_peak_used_mb')}, ONNX {s['onnx']}")
print(f"GPU_RATE={s.get('scenes_per_s_per_gpu') or ''}")
EOF
}
SUMMARY=$(summarise) || log "summary failed"
echo "$SUMMARY" | grep -v '^GPU_RATE=' | tee -a "$LOG"
GPU_RATE=$(echo "$SUMMARY" | sed -n 's/^GPU_RATE=//p')

if [[ -n "$GPU_RATE" ]] && (( $(left) > 60 )); then
  SCENES_KIND=generated
  "$PY" -c 'from drope.samples import womd_sample; raise SystemExit(not womd_sample().exists())' 2>/dev/null && SCENES_KIND=womd
  if [[ "$CPU_MODE" == 1 ]]; then
    LOADER_ARGS=(--quick)
  else
    LOADER_ARGS=(--loader-scenes 400 --workers "0,$WORKERS" --seconds 5 --cost-models "$MODEL" --workers-per-gpu "$WORKERS")
  fi
  run_stage loader $(( $(left) - 15 )) drope-bench train-data --skip-train --scenes "$SCENES_KIND" --base-scenes 16 \
    --work "$OUT/bench_data" "${LOADER_ARGS[@]}" --gpu-scenes-per-s "$GPU_RATE" --json "$OUT/train_data.json" \
    && grep -A4 -i "projection" "$OUT/train_data.md" | tee -a "$LOG"
fi

{
  echo "# bench/gpu_check.sh ($( [[ "$CPU_MODE" == 1 ]] && echo "CPU dry run" || echo "GPU" ), $(date -u +%FT%TZ))"
  echo
  echo "| stage | status | seconds |"; echo "|---|---|---|"
  for st in env data train export sim loader; do echo "| $st | ${STATUS[$st]:-not run} | ${SECONDS_OF[$st]:-} |"; done
  echo; echo '```'; echo "$SUMMARY" | grep -v '^GPU_RATE='; echo '```'
} > "$OUT/summary.md"
log "total $(($(date +%s) - START))s; results in $OUT (summary.md, summary.json)"
[[ "${STATUS[train]:-}" == ok && "${STATUS[export]:-}" == ok ]]
