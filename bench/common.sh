# Shared helpers for bench/load.sh, bench/reload.sh, bench/soak.sh and bench/hostile.sh.
# Source it.
#
# Everything runs on loopback; every server started here is killed on exit (trap).
# Environment knobs (all optional):
#   EG_PORT, EG_METRICS_PORT, BARE_PORT   listen ports (defaults 18443, 19090, 18444)
#   ENTRIES                               allowlist size (default 100000)
#   KEEP=1                                keep the scratch directory
#   SKIP_BUILD=1                          use the binaries already built
#   EG_VMEM_MIB                           cap egress-guard's address space (ulimit -v), so
#                                         a runaway allocation kills it, not the machine

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/egress-guard
BARE=$TARGET/release/examples/bare-server
GEN=$TARGET/release/examples/gen-allowlist
FIXTURES=$ROOT/tests/fixtures/admission
BODY_ALLOW=$FIXTURES/validate-create-serviceentry-v1-github-api.json
BODY_DENY=$FIXTURES/validate-create-serviceentry-v1-exfil.json
BODY_MUTATE=$FIXTURES/mutate-create-virtualservice-v1-github-api.json
EG_PORT=${EG_PORT:-18443}
EG_METRICS_PORT=${EG_METRICS_PORT:-19090}
BARE_PORT=${BARE_PORT:-18444}
FLOOR_PORT=${FLOOR_PORT:-18445}
ENTRIES=${ENTRIES:-100000}
EG_URL=https://127.0.0.1:$EG_PORT
BARE_URL=https://127.0.0.1:$BARE_PORT
FLOOR_URL=https://127.0.0.1:$FLOOR_PORT
METRICS_URL=http://127.0.0.1:$EG_METRICS_PORT
OHA=${OHA:-oha}
PY=$(command -v /usr/bin/python3 || command -v python3)

PIDS=()
# The Deployment's allocator settings (deploy/base/deployment.yaml), unless given.
export _RJEM_MALLOC_CONF=${_RJEM_MALLOC_CONF:-background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/egress-guard-bench.XXXXXX")

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local pid i alive
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    # A server busy with a runaway review does not exit on SIGTERM: give up after 5 s.
    for i in $(seq 1 50); do
        alive=0
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [[ $alive == 1 ]] || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        log "scratch directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Refuses to start when a port is already taken (a leftover server would be measured).
check_port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        die "port $1 is in use; set EG_PORT/EG_METRICS_PORT/BARE_PORT"
    fi
}

build() {
    if [[ ${SKIP_BUILD:-0} == 1 ]]; then
        log "SKIP_BUILD=1: using existing binaries"
    else
        log "building release binaries (lto: a few minutes the first time)"
        (cd "$ROOT" && cargo build --release --bin egress-guard --example bare-server --example gen-allowlist)
    fi
    [[ -x $BIN && -x $BARE && -x $GEN ]] || die "release binaries missing in $TARGET"
}

ensure_oha() {
    if command -v "$OHA" >/dev/null 2>&1; then
        return
    fi
    log "oha not found: installing it from crates.io (cargo install oha --locked)"
    cargo info oha >/dev/null 2>&1 || die "crates.io has no oha; install a load generator by hand"
    cargo install oha --locked || die "cargo install oha failed (see above); install oha by hand and re-run"
    command -v "$OHA" >/dev/null 2>&1 || die "oha installed but not on PATH (add ~/.cargo/bin)"
}

# Development certificates with SANs localhost, 127.0.0.1 and ::1, exactly as
# `egress-guard serve` writes them when no --tls-cert is given: start it once with
# --certs-dir on ephemeral ports, wait for the files, stop it.
dev_certs() {
    local dir=$1 pid i
    mkdir -p "$dir"
    "$BIN" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --certs-dir "$dir" \
        >"$dir/gen.log" 2>&1 &
    pid=$!
    for i in $(seq 1 100); do
        if grep -q "egress-guard serving" "$dir/gen.log"; then break; fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir/gen.log" >&2; die "certificate generation failed"; }
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [[ -s $dir/tls.crt && -s $dir/tls.key && -s $dir/ca.crt ]] || die "no certificate in $dir"
}

gen_allowlist() { # FILE ENTRIES [gen-allowlist flags...]
    local file=$1 n=$2
    shift 2
    "$GEN" "$n" "$@" >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

# start_eg ALLOWLIST CERT KEY [extra serve flags...]: sets EG_PID; logs to $WORK/eg.log.
# An empty ALLOWLIST serves the embedded example allowlist.
start_eg() {
    local allowlist=$1 cert=$2 key=$3
    shift 3
    local allow_flags=()
    if [[ -n $allowlist ]]; then
        allow_flags=(--allowlist-file "$allowlist")
    fi
    check_port_free "$EG_PORT"
    check_port_free "$EG_METRICS_PORT"
    (
        if [[ -n ${EG_VMEM_MIB:-} ]]; then ulimit -v $((EG_VMEM_MIB * 1024)); fi
        exec "$BIN" serve --listen "127.0.0.1:$EG_PORT" --metrics-listen "127.0.0.1:$EG_METRICS_PORT" \
            "${allow_flags[@]}" --tls-cert "$cert" --tls-key "$key" "$@"
    ) >>"$WORK/eg.log" 2>&1 &
    EG_PID=$!
    PIDS+=("$EG_PID")
    local i
    for i in $(seq 1 300); do
        if curl -fsS -o /dev/null "$METRICS_URL/readyz" 2>/dev/null; then
            log "egress-guard ready (pid $EG_PID) after $((i / 10)).$((i % 10)) s"
            return
        fi
        kill -0 "$EG_PID" 2>/dev/null || { tail -20 "$WORK/eg.log" >&2; die "egress-guard exited"; }
        sleep 0.1
    done
    die "egress-guard not ready within 30 s"
}

# start_bare CERT KEY CA: sets BARE_PID.
start_bare() {
    start_reference bare "$BARE_PORT" "$BARE_URL" "$@"
    BARE_PID=$REF_PID
}

# start_floor CERT KEY CA: the floor server (bare-server --floor), sets FLOOR_PID.
start_floor() {
    start_reference floor "$FLOOR_PORT" "$FLOOR_URL" "$@" --floor
    FLOOR_PID=$REF_PID
}

# start_reference NAME PORT URL CERT KEY CA [bare-server flags...]: sets REF_PID once
# the server answers /readyz.
start_reference() {
    local name=$1 port=$2 url=$3 cert=$4 key=$5 ca=$6
    shift 6
    check_port_free "$port"
    "$BARE" --listen "127.0.0.1:$port" --tls-cert "$cert" --tls-key "$key" "$@" \
        >>"$WORK/$name.log" 2>&1 &
    REF_PID=$!
    PIDS+=("$REF_PID")
    local i
    for i in $(seq 1 100); do
        if curl -fsS --cacert "$ca" -o /dev/null "$url/readyz" 2>/dev/null; then
            log "$name server ready (pid $REF_PID)"
            return
        fi
        kill -0 "$REF_PID" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name server exited"; }
        sleep 0.1
    done
    die "$name server not ready within 10 s"
}

# review URL BODY CA: prints response.allowed of one review.
review() {
    curl -fsS --cacert "$3" -H 'Content-Type: application/json' --data-binary "@$2" \
        "$1/validate" | jq -r '.response.allowed'
}

rss_mib() { # PID FIELD(VmRSS|VmHWM)
    awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

cpu_ticks() { # PID: utime + stime in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# "busy total" clock ticks of the whole machine, all cores (/proc/stat).
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# CPU of this shell's waited-for children (oha, curl, jq...), clock ticks.
children_ticks() {
    awk '{ print $16 + $17 }' "/proc/$$/stat"
}

# oha_run NAME ARGS...: runs oha against the given URL with JSON output into $WORK/NAME.json.
# Adds --no-tui, -w (wait for in-flight requests at the deadline, so they are not
# counted as errors) and the content type.
oha_run() {
    local name=$1
    shift
    "$OHA" --no-tui --output-format json -w -m POST -T application/json "$@" \
        >"$WORK/$name.json" 2>"$WORK/$name.err" ||
        { cat "$WORK/$name.err" >&2; die "oha failed ($name)"; }
}

# JSON summary fields of an oha run.
oha_rps() { jq -r '.summary.requestsPerSec | floor' "$WORK/$1.json"; }
oha_total() { jq -r '([.statusCodeDistribution[]] | add // 0) + ([.errorDistribution[]] | add // 0)' "$WORK/$1.json"; }
# Failures: transport errors plus any status other than 200.
oha_failed() {
    jq -r '([.errorDistribution[]] | add // 0) + ([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0)' "$WORK/$1.json"
}
oha_errors() { jq -r '.errorDistribution | to_entries | map("\(.key): \(.value)") | join("; ")' "$WORK/$1.json"; }
oha_pct_ms() { # NAME KEY(p50|p99|p99.9) from the whole run
    jq -r --arg k "$2" '.latencyPercentiles[$k] * 1000 | . * 1000 | round / 1000' "$WORK/$1.json"
}
oha_max_ms() { jq -r '.summary.slowest * 1000 | . * 1000 | round / 1000' "$WORK/$1.json"; }

# db_stats NAME SKIP_S: "n p50 p99 p99.9 max" (ms) over records of $WORK/NAME.db that
# started after SKIP_S seconds (oha's client start-up would otherwise dominate the tail).
db_stats() {
    "$PY" - "$WORK/$1.db" "$2" <<'EOF'
import math, sqlite3, sys
db, skip = sys.argv[1], float(sys.argv[2])
# With --latency-correction, latency counts from the scheduled start (no coordinated
# omission); without it start_latency_correction is NULL and this is plain duration.
rows = [r[0] for r in sqlite3.connect(db).execute(
    "SELECT end - COALESCE(start_latency_correction, start) AS d FROM oha"
    " WHERE COALESCE(start_latency_correction, start) >= ? ORDER BY d", (skip,))]
if not rows:
    print("0 nan nan nan nan")
    sys.exit()
def pct(p):
    i = min(len(rows) - 1, max(0, math.ceil(p / 100 * len(rows)) - 1))
    return rows[i] * 1e3
print(len(rows), *("%.3f" % pct(p) for p in (50, 99, 99.9)), "%.3f" % (rows[-1] * 1e3))
EOF
}

# Histogram of allowlist load time from /metrics: "count mean_ms".
load_time_stats() {
    curl -fsS "$METRICS_URL/metrics" | awk '
        /^egress_guard_allowlist_load_seconds_sum/ { s = $2 }
        /^egress_guard_allowlist_load_seconds_count/ { c = $2 }
        END { if (c > 0) printf "%d %.1f\n", c, s / c * 1000; else print "0 nan" }'
}

# took_ms of every "allowlist loaded" log line, as a distribution: "n p50 p90 max".
took_ms_stats() { # LOGFILE [SKIP_FIRST_N]
    grep -o 'took_ms=[0-9.]*' "$1" | cut -d= -f2 | tail -n +"$((${2:-0} + 1))" | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "0 nan nan nan"; exit }
            p50 = v[int((NR + 1) * 0.5)]; p90 = v[int(NR * 0.9) > 0 ? int(NR * 0.9) : 1]
            printf "%d %.1f %.1f %.1f\n", NR, p50, p90, v[NR] }'
}

metric() { # PREFIX: sum of the series on /metrics whose line starts with PREFIX (literal)
    curl -fsS "$METRICS_URL/metrics" | awk -v p="$1" 'index($0, p) == 1 { s += $NF } END { printf "%d\n", s }'
}

results_file() { # PREFIX
    mkdir -p "$ROOT/bench/results"
    echo "$ROOT/bench/results/$1-$(date +%Y%m%d-%H%M%S).md"
}

machine_line() {
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); oha $("$OHA" --version 2>/dev/null | awk '{print $2}'); egress-guard $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo "+dirty")"
}

# Samples VmRSS of PID every 0.25 s while oha runs; prints the maximum.
rss_sampler() {
    local pid=$1 out=$2 max=0 v
    while [[ -e $out.run ]]; do
        v=$(rss_mib "$pid" VmRSS)
        max=$(awk -v a="$max" -v b="$v" 'BEGIN { print (b > a) ? b : a }')
        sleep 0.25
    done
    echo "$max" >"$out"
}

# measure NAME SERVER BODY oha-args...: one oha run against ${URL_OF[SERVER]} with CPU
# and RSS bookkeeping for ${PID_OF[SERVER]} (the caller declares both arrays and
# LOAD_RSS). Sets CPU_US (server CPU per request) and OTHER (the share of the machine
# used by anything else).
measure() {
    local name=$1 server=$2 body=$3
    shift 3
    local pid=${PID_OF[$server]} t0 t1 m0 m1 c0 c1
    touch "$WORK/$name.rss.run"
    rss_sampler "$pid" "$WORK/$name.rss" &
    local sampler=$!
    t0=$(cpu_ticks "$pid")
    m0=$(machine_ticks)
    c0=$(children_ticks)
    oha_run "$name" --cacert "$CA" -D "$body" "$@" "${URL_OF[$server]}/validate"
    t1=$(cpu_ticks "$pid")
    m1=$(machine_ticks)
    c1=$(children_ticks)
    rm -f "$WORK/$name.rss.run"
    wait "$sampler"
    # CPU used by anything but this server and the load generator, % of all cores:
    # another build on the machine shows up here and makes the row unreliable.
    OTHER=$(awk -v m0="$m0" -v m1="$m1" -v s="$((t1 - t0))" -v c="$((c1 - c0))" 'BEGIN {
        split(m0, a, " "); split(m1, b, " "); busy = b[1] - a[1]; total = b[2] - a[2]
        o = (total > 0) ? (100 * (busy - s - c) / total) : 0
        printf "%.0f%%", (o < 0) ? 0 : o }')
    if [[ ${OTHER%\%} -gt 10 ]]; then
        log "$name: other processes used $OTHER of the CPU during the run; numbers are disturbed"
    fi
    local total rss
    total=$(oha_total "$name")
    rss=$(cat "$WORK/$name.rss")
    LOAD_RSS[$server]=$(awk -v a="${LOAD_RSS[$server]}" -v b="$rss" 'BEGIN { print (b > a) ? b : a }')
    # clock ticks are 10 ms
    CPU_US=$(awk -v d="$((t1 - t0))" -v n="$total" 'BEGIN { printf "%.0f", (n > 0) ? (d * 10000 / n) : 0 }')
    local failed
    failed=$(oha_failed "$name")
    if [[ $failed != 0 ]]; then
        log "$name: $failed failed requests: $(oha_errors "$name")"
    fi
}

