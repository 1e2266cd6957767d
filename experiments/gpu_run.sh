#!/usr/bin/env bash
# The next GPU session's one prepared run (about 7 minutes): GPU checks of the
# Levenberg-Marquardt solver, then the benchmark rows still missing on GPU, each bounded
# in time and writing its table straight into $OUT (SEQJAX_RESULTS_DIR).
# Already committed from an H200: linear_scan (up to 128K x 256), the chunk sweep, and
# the ParaGRU Newton rows. bench_train.py is not here: the trainer's data pipeline needs
# grain, which the GPU machine does not have.
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

part 80 "tests (GPU): trust region and damped Newton" $py -m pytest -q -p no:cacheprovider \
  tests/scan/test_trust_region.py tests/scan/test_newton.py \
  -k "(matches_dense and associative and 32) or levenberg or zero_lambda"
part 70 "damping" $py experiments/bench_damping.py --length 1024 --min-time 0.05
part 75 "newton ParaLSTM" $py experiments/bench_newton.py --skip convergence \
  --cells ParaLSTM --min-time 0.05 --name newton_lstm
part 70 "linear_scan 128K x 1024" $py experiments/bench_linear_scan.py --lengths 131072 \
  --widths 1024 --structures elementwise complex --methods sequential associative auto \
  --max-gb 40 --min-time 0.05 --name linear_scan_128k
part 100 "mixers" $py experiments/bench_mixers.py --preset demo --min-time 0.05
ls -la "$SEQJAX_RESULTS_DIR" | tee -a "$log"
