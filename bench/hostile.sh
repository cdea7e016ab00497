#!/usr/bin/env bash
# Hostile input bounds: worst-case reviews from bench/hostile_gen.rs (every shape at
# 16 KiB, judged inline, and at 256 KiB and just under the 3 MiB body limit, judged on
# the blocking pool) against the release server on loopback, with the embedded
# allowlist and a 100,000-entry one. About 12 minutes after the build.
#
#   bash bench/hostile.sh                        # N=5 requests per shape and size
#   SKIP_BUILD=1 N=3 SHAPES=vs-,options ALLOWLISTS=embedded bash bench/hostile.sh
#
# Needs cargo, curl and python3 (bench/hostile.py: sampling and the report).
#
# For each shape, size and endpoint: N sequential requests (a new TLS connection each),
# recording HTTP status, verdict and codes, the server's own time per review (elapsed_us
# of its decision log line), curl's time_total, the answer's size, the server's CPU per
# request (/proc/PID/stat, including work that continues after the answer), and VmRSS
# sampled every 2 ms against the settled RSS before the shape. Then bursts of BURST
# copies of one body (the slowest, the most memory-hungry and the longest-working 3 MiB
# shape, and the slowest inline one) while /healthz and a small review are polled every
# 20 ms.
#
# The server runs with the Deployment's jemalloc settings (freed memory returned within
# a second), so each shape starts from a settled RSS, and with --validate-configmap so
# that edits of the allowlist's ConfigMap are judged. A review still burning CPU
# LINGER_MAX seconds after its answer, or one unanswered within MAX_TIME, gets the
# server restarted (SIGKILL when SIGTERM does not end it within 5 s), and so does a
# server that died: its address space is capped at EG_VMEM_MIB (4 GiB) so that a
# runaway allocation ends it instead of exhausting the machine.
#
# Prints a Markdown report and writes it to bench/results/hostile-<date>.md (and the
# raw rows as .jsonl). Exits 1 if any request got a 5xx other than 503 or no answer,
# the server died, or an answer was over 16 KiB (a /mutate patch aside: one operation
# per patched route).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=${N:-5}
ALLOWLISTS=${ALLOWLISTS:-embedded,100k}
SHAPES=${SHAPES:-}            # comma-separated substrings of shape names; empty: all
SIZES=${SIZES:-16k,256k,768k,1m,3m,10k}
MAX_TIME=${MAX_TIME:-30}      # seconds curl waits for one answer
LINGER_MAX=${LINGER_MAX:-10}  # seconds of CPU after the last answer before a restart
BURST=${BURST:-8}
# The Deployment limits RSS to 512 MiB; here a cap on the address space keeps a runaway
# review from taking the machine's memory (the server dies instead, and is restarted).
export EG_VMEM_MIB=${EG_VMEM_MIB:-4096}
HOSTILE_GEN=$TARGET/release/examples/hostile-gen
HELPER=$ROOT/bench/hostile.py
SMALL_BODY=$FIXTURES/validate-create-virtualservice-v1-github-api.json

command -v curl >/dev/null || die "curl is required"
[[ -n $PY ]] || die "python3 is required"

if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using existing binaries"
else
    log "building release binaries (lto: a few minutes the first time)"
    (cd "$ROOT" && cargo build --release --bin egress-guard --example gen-allowlist --example hostile-gen)
fi
[[ -x $BIN && -x $GEN && -x $HOSTILE_GEN ]] || die "release binaries missing in $TARGET"

log "scratch: $WORK"
BODIES=$WORK/bodies
IFS=, read -r -a shape_filter <<<"$SHAPES"
"$HOSTILE_GEN" "$BODIES" "${shape_filter[@]}" 2>"$WORK/gen.log" || { cat "$WORK/gen.log" >&2; die "hostile-gen failed"; }
log "$(($(wc -l <"$BODIES/index.tsv") - 1)) bodies in $BODIES"

dev_certs "$WORK/certs"
CA=$WORK/certs/ca.crt
CERT=$WORK/certs/tls.crt
KEY=$WORK/certs/tls.key
mkdir -p "$WORK/allowlist" "$WORK/scratch"
RESULTS=$WORK/results.jsonl
BURSTS=$WORK/bursts.jsonl
: >"$RESULTS"
: >"$BURSTS"

# Stops the server: SIGTERM, then SIGKILL after 5 s. A review still being parsed on the
# blocking pool keeps the process alive after "server stopped" (the runtime waits for
# it), so shutdown alone can take as long as the runaway review.
KILLED=0
stop_eg() {
    [[ -n ${EG_PID:-} ]] && kill -0 "$EG_PID" 2>/dev/null || return 0
    kill "$EG_PID"
    local i
    for i in $(seq 1 50); do
        kill -0 "$EG_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$EG_PID" 2>/dev/null; then
        log "egress-guard (pid $EG_PID) still running 5 s after SIGTERM: SIGKILL"
        kill -KILL "$EG_PID"
        KILLED=$((KILLED + 1))
    fi
    wait "$EG_PID" 2>/dev/null || true
}

# serve ALLOWLIST-NAME: (re)starts egress-guard with that allowlist.
serve() {
    stop_eg
    # --validate-configmap: edits of the allowlist's ConfigMap are judged too.
    local flags=(--log-format json --validate-configmap egress-guard/egress-guard-allowlist)
    case $1 in
    embedded) start_eg "" "$CERT" "$KEY" "${flags[@]}" ;;
    100k) start_eg "$WORK/allowlist/allowlist.yaml" "$CERT" "$KEY" "${flags[@]}" ;;
    esac
}

declare -A RESTARTS=()
EG_PID=
for allowlist in ${ALLOWLISTS//,/ }; do
    case $allowlist in
    embedded) ;;
    100k)
        gen_allowlist "$WORK/allowlist/allowlist.yaml" 100000
        # The audit-mode shape needs its namespace in audit, as in the example allowlist.
        printf '  sandbox:\n    mode: audit\n' >>"$WORK/allowlist/allowlist.yaml"
        ;;
    *) die "unknown allowlist $allowlist (embedded or 100k)" ;;
    esac
    serve "$allowlist"
    RESTARTS[$allowlist]=0
    while IFS=$'\t' read -r shape size endpoints bytes file description; do
        [[ ,$SIZES, == *",$size,"* ]] || continue
        for endpoint in ${endpoints//,/ }; do
            log "$allowlist $shape $size /$endpoint ($bytes bytes)"
            rc=0
            "$PY" -B "$HELPER" measure --allowlist "$allowlist" --shape "$shape" --size "$size" \
                --endpoint "$endpoint" --description "$description" --url "$EG_URL/$endpoint" \
                --body "$file" --ca "$CA" --log "$WORK/eg.log" --scratch "$WORK/scratch" \
                --pid "$EG_PID" --n "$N" --max-time "$MAX_TIME" --linger-max "$LINGER_MAX" \
                </dev/null >>"$RESULTS" || rc=$?
            if [[ $rc == 3 ]]; then
                log "$shape $size: server died, stuck or still busy: restarting it"
                RESTARTS[$allowlist]=$((RESTARTS[$allowlist] + 1))
                serve "$allowlist"
            fi
        done
    done < <(tail -n +2 "$BODIES/index.tsv")

    # Bursts: the slowest, the hungriest and the longest-working 3 MiB shape that did
    # not get stuck, and the slowest one judged inline (16 KiB).
    while IFS=$'\t' read -r shape size endpoint; do
        [[ -n $shape ]] || continue
        log "$allowlist burst: $BURST x $shape $size /$endpoint"
        rc=0
        "$PY" -B "$HELPER" burst --allowlist "$allowlist" --shape "$shape" --size "$size" \
            --endpoint "$endpoint" --url "$EG_URL/$endpoint" \
            --body "$BODIES/$shape.$size.json" --ca "$CA" --health "$METRICS_URL/healthz" \
            --small "$SMALL_BODY" --small-url "$EG_URL/validate" --scratch "$WORK/scratch" \
            --pid "$EG_PID" --parallel "$BURST" --max-time "$MAX_TIME" --linger-max "$LINGER_MAX" \
            </dev/null >>"$BURSTS" || rc=$?
        if [[ $rc == 3 ]]; then
            RESTARTS[$allowlist]=$((RESTARTS[$allowlist] + 1))
            serve "$allowlist"
        fi
    done < <("$PY" -B "$HELPER" pick --results "$RESULTS" --allowlist "$allowlist")
    if kill -0 "$EG_PID" 2>/dev/null; then
        log "$allowlist: VmHWM $(rss_mib "$EG_PID" VmHWM) MiB at the end; ${RESTARTS[$allowlist]} restarts"
    fi
done
stop_eg

OUT=$(results_file hostile)
{
    echo "# egress-guard hostile input bounds, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); egress-guard $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo "+dirty"); release build, loopback TLS, default serve limits (--review-deadline 2s) plus --validate-configmap, _RJEM_MALLOC_CONF=$_RJEM_MALLOC_CONF."
    echo "$N requests per row, each on a new connection. Server ms: elapsed_us of the server's decision line (body read, queueing and evaluation). CPU: server utime+stime per request, including work after the answer. RSS: settled VmRSS before the row → highest VmRSS sampled every 2 ms during it. Other CPU: share of both cores used by other processes during the row (this machine is shared; above ~10% times are disturbed). Flags: slow (> 100 ms), rss (growth > 5× the body and > 8 MiB), answer (> 4 KiB), linger (CPU after the answer), timeout (no answer within ${MAX_TIME} s)."
    echo
    echo "## Summary: the largest size of each shape (and 16 KiB where judging it inline takes over 10 ms)"
    echo
    "$PY" -B "$HELPER" summary --results "$RESULTS"
    echo
    echo "## Every row"
    echo
    "$PY" -B "$HELPER" table --results "$RESULTS" --bursts "$BURSTS"
    echo
    echo "Server restarts (stuck, still busy or dead): $(for a in "${!RESTARTS[@]}"; do printf '%s %s; ' "$a" "${RESTARTS[$a]}"; done)of the stops, $KILLED needed SIGKILL (SIGTERM did not end the process within 5 s)."
} | tee "$OUT"
cp "$RESULTS" "${OUT%.md}.jsonl"
log "written to $OUT"

FAILURES=$("$PY" -B "$HELPER" failures --results "$RESULTS" --bursts "$BURSTS")
if [[ -n $FAILURES ]]; then
    printf '%s\n' "$FAILURES" >&2
    die "$(wc -l <<<"$FAILURES") failures"
fi
