#!/usr/bin/env bash
# LockN's GPU engines measured on a lent GPU machine with no network, in one self-limiting command.
#
# Here (network, the project's venv):   make gpu-bundle && make gpu-bundle-peer   # .gpu: the wheels the machine lacks
# There (from the repo root, .gpu carried), one device call (a session has 15 minutes of device time, a call 600 s):
#     OUT=/some/dir bash bench/gpu_lease.sh [extra bench.gpu arguments]
#
# Everything fits in $LEASE_S seconds (default 540), each phase cut to what is left: installs the carried wheels
# ahead of the machine's own packages (transformers 4.57.3 over its newer one), writes what the machine is, runs the
# GPU-only tests ($GPU_TESTS, at most $TESTS_S seconds; their summary lands in lease.log), samples GPU load and
# memory every second, and runs `python -m bench.gpu --full-size --budget-s B --weights $WEIGHTS --json $OUT/gpu.json`
# under an outer timeout (B: $BUDGET_S, less if the lease is short; plus $SPARE_S of headroom). Then
# bench/peer_lease.sh measures the peer package (faster-qwen3-tts, `make gpu-bundle-peer`) on the Qwen checkpoint
# the bench kept, in whatever time is left ($PEER_S to fix it, at least $PEER_MIN_S kept for it; PEER_S=0 skips it):
# $OUT/peer.json. $OUT gets: env.txt, lease.log, gpu.json (written after every measured step, so a run cut short
# keeps its figures), nvidia-smi.csv, pip.log.
set -u
OUT="${OUT:-/tmp/lockn-gpu-out}"
LEASE_S="${LEASE_S:-540}"
BUDGET_S="${BUDGET_S:-240}"
SPARE_S="${SPARE_S:-90}"
PEER_S="${PEER_S:-}"
PEER_MIN_S="${PEER_MIN_S:-120}"
PEER_WHEELS="${PEER_WHEELS:-.gpu/peer}"
SITE="${SITE:-/tmp/lockn-site}"
WHEELS="${WHEELS:-.gpu/whl}"
WEIGHTS="${WEIGHTS:-/tmp/lockn-weights}"
GPU_TESTS="${GPU_TESTS:-tests/test_cuda_graphs.py}"
TESTS_S="${TESTS_S:-90}"
PY="${PY:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
END=$(( SECONDS + LEASE_S ))
mkdir -p "$OUT"
cd "$HERE" || exit 2

log() { echo "[gpu_lease +${SECONDS}s] $*" | tee -a "$OUT/lease.log"; }
left() { echo $(( END - SECONDS )); }
# The smaller of two limits in seconds, and never under 10 (a lease run past its end is cut by the device anyway).
least() { local v="$1"; [ "$2" -lt "$v" ] && v="$2"; [ "$v" -lt 10 ] && v=10; echo "$v"; }
# The peer's share, kept back from LockN's bench: none when it will not run.
if [ "$PEER_S" = "0" ] || [ ! -f "$PEER_WHEELS/requirements.txt" ]; then PEER_KEEP=0; else PEER_KEEP="${PEER_S:-$PEER_MIN_S}"; fi

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
timeout -k 5 "$(least "$TESTS_S" $(( $(left) - PEER_KEEP - 120 )))" "$PY" -m pytest --noconftest -q -p no:cacheprovider $GPU_TESTS 2>&1 | tail -n 30 | tee -a "$OUT/lease.log"

SMI_PID=""
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$OUT/nvidia-smi.csv" 2>&1 &
  SMI_PID=$!
fi
# The bench's outer limit: BUDGET_S + SPARE_S, or what the lease has left beside the peer's share; its budget
# keeps SPARE_S of that back (at least half of it goes to measuring).
OUTER_S=$(least $(( BUDGET_S + SPARE_S )) $(( $(left) - PEER_KEEP )))
RUN_S=$(( OUTER_S - SPARE_S > OUTER_S / 2 ? OUTER_S - SPARE_S : OUTER_S / 2 ))
log "bench.gpu --full-size, budget ${RUN_S}s (within ${OUTER_S}s; $(left)s of the lease left) $*"
timeout -k 10 "$OUTER_S" "$PY" -m bench.gpu --full-size --budget-s "$RUN_S" --weights "$WEIGHTS" \
    --json "$OUT/gpu.json" "$@" 2>&1 | tee -a "$OUT/lease.log"
rc=${PIPESTATUS[0]}
log "bench.gpu exit code $rc"
# Then the peer package on the Qwen checkpoint the bench kept, in its own site directory, in what is left
# (bench/peer_lease.sh: skipped without .gpu/peer or with PEER_S=0; it never changes this script's exit code,
# which stays bench.gpu's).
OUT="$OUT" PY="$PY" WHEELS="$WHEELS" SITE="$SITE" PEER_WHEELS="$PEER_WHEELS" PEER_S="${PEER_S:-$(( $(left) - 10 ))}" \
    PEER_CHECKPOINT="${PEER_CHECKPOINT:-$WEIGHTS/qwen3-${PEER_SIZE:-1.7b}}" bash "$HERE/bench/peer_lease.sh"
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2> /dev/null
rm -rf "$WEIGHTS/fish" "$WEIGHTS"/qwen3-*; rmdir "$WEIGHTS" 2> /dev/null
log "in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
