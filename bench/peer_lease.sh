#!/usr/bin/env bash
# The peer package (bench.peer_qwen: faster-qwen3-tts) measured on a lent GPU machine, on the same random
# full-size checkpoint as LockN's Qwen. bench/gpu_lease.sh runs this after LockN's own bench; it can run alone.
#
# Here (network):   make gpu-bundle-peer     # .gpu/peer: requirements.txt, and the wheels .gpu/whl lacks
# There:            OUT=/some/dir PEER_S=150 bash bench/peer_lease.sh   (gpu_lease.sh calls it with what is left)
#
# All of it within $PEER_S seconds:
# 1. installs .gpu/peer/requirements.txt (wheels from .gpu/peer and .gpu/whl) into $PEER_SITE, a site directory of
#    its own: the peer runs on transformers 5, LockN on 4.57.3;
# 2. unless $PEER_CHECKPOINT already holds one (the checkpoint `bench.gpu --weights` kept), builds it with
#    `python -m bench.full_size --qwen` in LockN's environment ($SITE, the wheels gpu_lease.sh installed, ahead of
#    the machine's packages: qwen-tts 0.1.1 saves it, as bench.gpu --full-size);
# 3. runs `python -m bench.peer_qwen --budget-s B --json $OUT/peer.json` with only $PEER_SITE and the repo ahead of
#    the machine's own packages (not LockN's site), under an outer timeout at the deadline (B: what is left, less
#    $PEER_SPARE_S).
# Everything lands in $OUT/lease.log (pip's output in $OUT/peer-pip.log). Never fails its caller: a missing bundle,
# PEER_S=0, too little time or any failure is logged, and the exit code is 0.
set -u
OUT="${OUT:-/tmp/lockn-gpu-out}"
PY="${PY:-python3}"
WHEELS="${WHEELS:-.gpu/whl}"
SITE="${SITE:-/tmp/lockn-site}"
PEER_S="${PEER_S:-150}"
PEER_SPARE_S="${PEER_SPARE_S:-20}"
PEER_WHEELS="${PEER_WHEELS:-.gpu/peer}"
PEER_SITE="${PEER_SITE:-/tmp/lockn-peer-site}"
PEER_SIZE="${PEER_SIZE:-1.7b}"
PEER_CHECKPOINT="${PEER_CHECKPOINT:-/tmp/lockn-peer-qwen-$PEER_SIZE}"
PEER_ARGS="${PEER_ARGS:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT"
cd "$HERE" || exit 0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false \
       PYTHONUNBUFFERED=1

log() { echo "[peer_lease +${SECONDS}s] $*" | tee -a "$OUT/lease.log"; }
left() { echo $(( END - SECONDS )); }

if ! [ "$PEER_S" -gt 0 ] 2> /dev/null; then
  log "peer: PEER_S=$PEER_S, not measured"; exit 0
fi
END=$(( SECONDS + PEER_S ))
if [ ! -f "$PEER_WHEELS/requirements.txt" ]; then
  log "peer: no $PEER_WHEELS/requirements.txt ('make gpu-bundle-peer' where there is network), not measured"; exit 0
fi
"$PY" -m pip install -q --no-index --no-deps --only-binary=:all: --no-compile --no-cache-dir --upgrade \
    --target "$PEER_SITE" --find-links "$PEER_WHEELS" --find-links "$WHEELS" -r "$PEER_WHEELS/requirements.txt" \
    > "$OUT/peer-pip.log" 2>&1 || {
  log "peer: installing $PEER_WHEELS/requirements.txt failed, not measured:"
  tail -n 20 "$OUT/peer-pip.log" | tee -a "$OUT/lease.log"
  exit 0
}
log "peer: $(grep -c . "$PEER_WHEELS/requirements.txt") packages installed in $PEER_SITE"
# Run alone on a fresh machine, LockN's site is not there yet: its wheels go in as gpu_lease.sh puts them.
if [ ! -d "$SITE/qwen_tts" ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
      >> "$OUT/peer-pip.log" 2>&1 && rm -rf "$SITE/tests" && log "peer: LockN's wheels installed in $SITE"
fi

BUILT=""
if [ -f "$PEER_CHECKPOINT/config.json" ]; then
  log "peer: measured on the checkpoint already in $PEER_CHECKPOINT"
elif [ "$(left)" -lt 60 ]; then
  log "peer: $(left)s left of PEER_S=${PEER_S}s, too little to build its checkpoint"; exit 0
else
  PYTHONPATH="$SITE:$HERE" timeout -k 5 "$(left)" "$PY" -m bench.full_size --qwen "$PEER_CHECKPOINT" \
      --size "$PEER_SIZE" 2>&1 | tail -n 5 | tee -a "$OUT/lease.log"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    log "peer: building the checkpoint failed, not measured"; rm -rf "$PEER_CHECKPOINT"; exit 0
  fi
  BUILT="$PEER_CHECKPOINT"
fi

BUDGET=$(( $(left) - PEER_SPARE_S ))
if [ "$BUDGET" -lt 30 ]; then
  log "peer: $(left)s left of PEER_S=${PEER_S}s, too little to measure"
else
  log "peer: bench.peer_qwen, budget ${BUDGET}s (within $(left)s) $PEER_ARGS"
  # shellcheck disable=SC2086  # PEER_ARGS: extra arguments, split on purpose
  PYTHONPATH="$PEER_SITE:$HERE" timeout -k 5 "$(left)" "$PY" -m bench.peer_qwen \
      --checkpoint "$PEER_CHECKPOINT" --budget-s "$BUDGET" --json "$OUT/peer.json" $PEER_ARGS 2>&1 \
    | tee -a "$OUT/lease.log"
  log "peer: bench.peer_qwen exit code ${PIPESTATUS[0]}"
fi
[ -n "$BUILT" ] && rm -rf "$BUILT"
exit 0
