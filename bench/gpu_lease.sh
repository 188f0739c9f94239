#!/usr/bin/env bash
# LockN's GPU engines measured on a lent GPU machine with no network, in one self-limiting command.
#
# Here (network, the project's venv):   make gpu-bundle          # .gpu/whl: the wheels the machine lacks (~21 MiB)
# There (from the repo root, .gpu carried):
#     OUT=/some/dir BUDGET_S=420 bash bench/gpu_lease.sh [extra bench.gpu arguments]
#
# Installs the carried wheels ahead of the machine's own packages (transformers 4.57.3 over its newer one), writes
# what the machine is, samples GPU load and memory every second, and runs
# `python -m bench.gpu --full-size --budget-s $BUDGET_S --json $OUT/gpu.json` under an outer timeout (the budget
# plus $SPARE_S for building the weights and compiling). $OUT gets: env.txt, lease.log, gpu.json (written after
# every measured step, so a run cut short keeps its figures), nvidia-smi.csv, pip.log. Before the benchmark it runs
# the GPU-only tests ($GPU_TESTS, at most $TESTS_S seconds), whose summary lands in lease.log. After the benchmark,
# bench/peer_lease.sh measures the peer package (faster-qwen3-tts, `make gpu-bundle-peer`) for $PEER_S seconds
# (default 150, plus building its checkpoint; PEER_S=0 skips it): $OUT/peer.json.
set -u
OUT="${OUT:-/tmp/lockn-gpu-out}"
BUDGET_S="${BUDGET_S:-420}"
SPARE_S="${SPARE_S:-120}"
SITE="${SITE:-/tmp/lockn-site}"
WHEELS="${WHEELS:-.gpu/whl}"
GPU_TESTS="${GPU_TESTS:-tests/test_cuda_graphs.py}"
TESTS_S="${TESTS_S:-120}"
PY="${PY:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT"
cd "$HERE" || exit 2

log() { echo "[gpu_lease +${SECONDS}s] $*" | tee -a "$OUT/lease.log"; }

if ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  log "no wheels in $WHEELS: run 'make gpu-bundle' where there is network, and carry .gpu"
  exit 2
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    > "$OUT/pip.log" 2>&1 || { log "installing the wheels failed:"; tail -n 20 "$OUT/pip.log"; exit 3; }
rm -rf "$SITE/tests"  # descript-audio-codec ships a top-level `tests` package; LockN's own must win
export PYTHONPATH="$SITE:$HERE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false \
       PYTHONUNBUFFERED=1 PYTHONWARNINGS="ignore::SyntaxWarning,ignore::FutureWarning" \
       TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/lockn-inductor}"
log "$(ls "$WHEELS"/*.whl | wc -l) wheels installed in $SITE"

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  echo "cpus $(nproc), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  "$PY" -c "import sys, torch, transformers; print('python', sys.version.split()[0], '| torch', torch.__version__,
'cuda', torch.version.cuda, torch.cuda.is_available(), '| transformers', transformers.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$OUT/lease.log"

# The GPU-only tests first (a few seconds; no conftest: the machine has no database or broker packages).
log "GPU tests: $GPU_TESTS"
timeout -k 5 "$TESTS_S" "$PY" -m pytest --noconftest -q -p no:cacheprovider $GPU_TESTS 2>&1 | tail -n 30 | tee -a "$OUT/lease.log"

SMI_PID=""
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$OUT/nvidia-smi.csv" 2>&1 &
  SMI_PID=$!
fi
log "bench.gpu --full-size, budget ${BUDGET_S}s (+${SPARE_S}s for building and compiling) $*"
timeout -k 10 $(( BUDGET_S + SPARE_S )) "$PY" -m bench.gpu --full-size --budget-s "$BUDGET_S" --json "$OUT/gpu.json" "$@" \
    2>&1 | tee -a "$OUT/lease.log"
rc=${PIPESTATUS[0]}
log "bench.gpu exit code $rc"
# Then the peer package on the same kind of checkpoint, in its own site directory (bench/peer_lease.sh: skipped
# without .gpu/peer or with PEER_S=0; it never changes this script's exit code, which stays bench.gpu's).
OUT="$OUT" PY="$PY" WHEELS="$WHEELS" SITE="$SITE" bash "$HERE/bench/peer_lease.sh"
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2> /dev/null
log "in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
