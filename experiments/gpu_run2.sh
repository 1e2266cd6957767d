#!/usr/bin/env bash
# Second, short GPU run: the rows the first run's time limit cut, with auto -> associative.
set -u
export PYTHONPATH=. PYTHONUNBUFFERED=1 SEQJAX_RESULTS_DIR="${OUT:-/tmp/seqjax_out}"
mkdir -p "$SEQJAX_RESULTS_DIR"
log="$SEQJAX_RESULTS_DIR/gpu_log2.txt"
part() {
  local secs=$1 name=$2; shift 2
  echo "=== $name (limit ${secs}s) ===" | tee -a "$log"
  timeout --signal=INT --kill-after=5 "$secs" "$@" 2>&1 | grep -v "^E1126\|slow_operation\|constant-folding\|Constant folding\|^$\|file a bug\|%pad" | tail -n 40 | tee -a "$log"
}
part 50 "newton ParaGRU 256x8192 (auto=associative)" python3 experiments/bench_newton.py \
  --skip convergence --cells ParaGRU --hiddens 256 --lengths 8192 --min-time 0.1 --name newton_key
part 70 "linear_scan 128K x 1024" python3 experiments/bench_linear_scan.py --lengths 131072 \
  --widths 1024 --structures elementwise complex --methods sequential associative auto \
  --max-gb 40 --min-time 0.05 --name linear_scan_128k
part 75 "newton ParaLSTM" python3 experiments/bench_newton.py --skip convergence \
  --cells ParaLSTM --min-time 0.05 --name newton_lstm
ls -la "$SEQJAX_RESULTS_DIR" | tee -a "$log"
