#!/usr/bin/env bash
# The GPU session's one prepared run: GPU correctness tests, then the benchmarks, each
# bounded in time, writing tables straight into $OUT (SEQJAX_RESULTS_DIR).
# Usage on the device machine, from the repository root:  bash experiments/gpu_run.sh
set -u
export PYTHONPATH=. PYTHONUNBUFFERED=1 SEQJAX_RESULTS_DIR="${OUT:-/tmp/seqjax_out}"
mkdir -p "$SEQJAX_RESULTS_DIR"
log="$SEQJAX_RESULTS_DIR/gpu_log.txt"
py=python3
{
  date; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  $py -c "import jax, flax, sys; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} 2>&1 | tee "$log"

part() {  # part SECONDS NAME COMMAND...
  local secs=$1 name=$2; shift 2
  echo "=== $name (limit ${secs}s) ===" | tee -a "$log"
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$secs" "$@" 2>&1 | tail -n 60 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 ))s ===" | tee -a "$log"
}

part 100 "tests (GPU)" $py -m pytest -q -x -p no:cacheprovider tests/scan \
  -k "(values_and_gradients and float32 and fwd-h0) or (match_lax_scan and 300 and (diagonal or block_pair)) or long_sequence or chaotic_fallback"
part 45 "newton key row" $py experiments/bench_newton.py --skip convergence \
  --hiddens 256 --lengths 8192 --min-time 0.1
cp "$SEQJAX_RESULTS_DIR"/newton_*.md "$SEQJAX_RESULTS_DIR/newton_key_row.md" 2>/dev/null
part 40 "chunk sweep" $py experiments/bench_linear_scan.py --lengths 16384 131072 \
  --widths 1024 --chunk-sweep 8 16 32 64 128 256 512 --min-time 0.05
part 190 "linear_scan full" $py experiments/bench_linear_scan.py --preset full \
  --max-gb 40 --min-time 0.1
part 150 "newton speed" $py experiments/bench_newton.py --skip convergence --min-time 0.1
ls -la "$SEQJAX_RESULTS_DIR" | tee -a "$log"
