#!/usr/bin/env bash
# Load test (issue 8): egress-guard serve vs. the bare TLS ceiling (bench/bare_server.rs),
# loopback only, about 3 minutes after the build.
#
#   bash bench/load.sh                 # DUR=10s per run, ENTRIES=100000
#   DUR=5s SKIP_BUILD=1 bash bench/load.sh
#
# Measures, with real AdmissionReview bodies from tests/fixtures/admission:
#   - max throughput at c=16 and c=64 (HTTP/1.1 keep-alive over TLS, as the apiserver
#     pools connections), both servers, and egress-guard/bare;
#   - p50/p99/p99.9/max at fixed 1,000 and 2,000 rps (oha -q, latency-corrected, first
#     0.5 s dropped: oha's rustls client start-up would otherwise be the tail);
#   - a new TLS connection per request (--disable-keepalive);
#   - server CPU per review at a fixed 4,000 rps (from /proc/<pid>/stat), for the
#     ServiceEntry, an injected Pod, a Deployment and the allowlist ConfigMap, against
#     the bare server on the same body;
#   - server RSS idle, under load and peak (VmRSS/VmHWM), server CPU per request.
# Prints a Markdown report and writes it to bench/results/load-<date>.md.
# bench/floor.sh measures the distance to the floor (no parse at all) per review kind.
# Targets (issue 17): CPU per review at 4,000 rps <= bare's; throughput at c=16 >= 90%
# of bare; p99 at 1,000 and 2,000 rps <= bare's; RSS <= 32 MiB steady with 100k entries.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DUR=${DUR:-10s}
SKIP_S=0.5

build
ensure_oha

log "scratch: $WORK"
dev_certs "$WORK/certs"
CA=$WORK/certs/ca.crt
CERT=$WORK/certs/tls.crt
KEY=$WORK/certs/tls.key
# The allowlist gets a directory of its own: the server watches the file's directory,
# and writes next to it (e.g. the server's own log) would wake the watcher each time.
mkdir -p "$WORK/allowlist"
ALLOWLIST=$WORK/allowlist/allowlist.yaml
gen_allowlist "$ALLOWLIST" "$ENTRIES"
log "allowlist: $ENTRIES entries, $(du -k "$ALLOWLIST" | cut -f1) KiB"

BODY_POD=$FIXTURES/validate-create-pod-v1-app-injected.json
BODY_DEPLOY=$FIXTURES/validate-create-deployment-v1-shop.json
BODY_CONFIGMAP=$FIXTURES/validate-create-configmap-v1-egress-guard-allowlist.json
RATE=${RATE:-4000}
start_eg "$ALLOWLIST" "$CERT" "$KEY" --validate-configmap egress-guard/egress-guard-allowlist
start_bare "$CERT" "$KEY" "$CA"
LOAD_MS=$(took_ms_stats "$WORK/eg.log" | awk '{print $4}')

[[ $(review "$EG_URL" "$BODY_ALLOW" "$CA") == true ]] || die "egress-guard does not allow $BODY_ALLOW"
[[ $(review "$EG_URL" "$BODY_DENY" "$CA") == false ]] || die "egress-guard does not deny $BODY_DENY"
[[ $(review "$BARE_URL" "$BODY_ALLOW" "$CA") == true ]] || die "bare-server does not answer"

sleep 1
EG_IDLE=$(rss_mib "$EG_PID" VmRSS)
BARE_IDLE=$(rss_mib "$BARE_PID" VmRSS)
declare -A LOAD_RSS=([eg]=0 [bare]=0)

declare -A PID_OF=([eg]=$EG_PID [bare]=$BARE_PID)
declare -A URL_OF=([eg]=$EG_URL [bare]=$BARE_URL)
declare -A NAME_OF=([eg]=egress-guard [bare]=bare)

log "warm-up (3 s each)"
for s in eg bare; do
    measure "warm-$s" "$s" "$BODY_ALLOW" -z 3s -c 16
done

THROUGHPUT_ROWS=()
declare -A RPS
for c in 16 64; do
    for s in bare eg; do
        name="tput-$s-c$c"
        log "throughput ${NAME_OF[$s]} c=$c ($DUR)"
        measure "$name" "$s" "$BODY_ALLOW" -z "$DUR" -c "$c"
        RPS[$s-$c]=$(oha_rps "$name")
        THROUGHPUT_ROWS+=("| ${NAME_OF[$s]} | github-api (allowed) | $c | ${RPS[$s-$c]} | RATIO_$s-$c | $(oha_pct_ms "$name" p50) | $(oha_pct_ms "$name" p99) | $(oha_max_ms "$name") | $(oha_failed "$name") | $CPU_US | $OTHER |")
    done
done
name=tput-eg-c16-deny
log "throughput egress-guard c=16, exfil (denied) body ($DUR)"
measure "$name" eg "$BODY_DENY" -z "$DUR" -c 16
RPS[eg-deny]=$(oha_rps "$name")
THROUGHPUT_ROWS+=("| egress-guard | exfil (denied) | 16 | ${RPS[eg-deny]} | $(awk -v a="${RPS[eg-deny]}" -v b="${RPS[bare-16]}" 'BEGIN { printf "%.0f%%", 100 * a / b }') | $(oha_pct_ms "$name" p50) | $(oha_pct_ms "$name" p99) | $(oha_max_ms "$name") | $(oha_failed "$name") | $CPU_US | $OTHER |")

RATE_ROWS=()
declare -A P99
for q in 1000 2000; do
    for s in bare eg; do
        name="rate-$s-q$q"
        log "fixed rate ${NAME_OF[$s]} $q rps ($DUR)"
        measure "$name" "$s" "$BODY_ALLOW" -z "$DUR" -c 16 -q "$q" --latency-correction --db-url "$WORK/$name.db"
        read -r n p50 p99 p999 max < <(db_stats "$name" "$SKIP_S")
        P99[$s-$q]=$p99
        RATE_ROWS+=("| ${NAME_OF[$s]} | github-api (allowed) | $q | $(oha_rps "$name") | $n | $p50 | $p99 | $p999 | $max | $(oha_max_ms "$name") | $(oha_failed "$name") | $CPU_US | $OTHER |")
    done
done
name=rate-eg-q1000-deny
log "fixed rate egress-guard 1000 rps, exfil (denied) body ($DUR)"
measure "$name" eg "$BODY_DENY" -z "$DUR" -c 16 -q 1000 --latency-correction --db-url "$WORK/$name.db"
read -r n p50 p99 p999 max < <(db_stats "$name" "$SKIP_S")
P99[eg-deny]=$p99
RATE_ROWS+=("| egress-guard | exfil (denied) | 1000 | $(oha_rps "$name") | $n | $p50 | $p99 | $p999 | $max | $(oha_max_ms "$name") | $(oha_failed "$name") | $CPU_US | $OTHER |")

# CPU per review at a fixed rate: what the apiserver's steady stream costs.
CPU_ROWS=()
declare -A CPU_AT
for body in ALLOW POD DEPLOY CONFIGMAP; do
    var=BODY_$body
    file=${!var}
    for s in bare eg; do
        name="cpu-$s-$body"
        log "fixed $RATE rps ${NAME_OF[$s]} $(basename "$file") ($DUR)"
        measure "$name" "$s" "$file" -z "$DUR" -c 16 -q "$RATE"
        CPU_AT[$s-$body]=$CPU_US
        CPU_ROWS+=("| $(basename "$file" .json) | ${NAME_OF[$s]} | $(oha_rps "$name") | $CPU_US | $(oha_pct_ms "$name" p99) | $(oha_failed "$name") | $OTHER |")
    done
done

NOKA_ROWS=()
for s in bare eg; do
    name="noka-$s"
    log "new connection per request ${NAME_OF[$s]} c=16 ($DUR)"
    measure "$name" "$s" "$BODY_ALLOW" -z "$DUR" -c 16 --disable-keepalive
    NOKA_ROWS+=("| ${NAME_OF[$s]} | 16 | $(oha_rps "$name") | $(oha_pct_ms "$name" p50) | $(oha_pct_ms "$name" p99) | $(oha_max_ms "$name") | $(oha_failed "$name") | $CPU_US | $OTHER |")
done

EG_HWM=$(rss_mib "$EG_PID" VmHWM)
BARE_HWM=$(rss_mib "$BARE_PID" VmHWM)
EG_END=$(rss_mib "$EG_PID" VmRSS)
BARE_END=$(rss_mib "$BARE_PID" VmRSS)
REQS=$(metric 'egress_guard_requests_total{')
BAD=$(metric 'egress_guard_bad_requests_total{')
LOG_LINES=$(wc -l <"$WORK/eg.log")
LOG_KIB=$(du -k "$WORK/eg.log" | cut -f1)
SERVER_ERRORS=$(grep -cE ' (ERROR|WARN) ' "$WORK/eg.log" || true)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

# log_variant NAME FLAG...: restarts egress-guard with FLAG (a decision-log setting) and
# adds its c=16 throughput row. Throughput rows because CPU per request at saturation is
# steadier than at a fixed rate, which moves by ±20 µs between server restarts here.
log_variant() {
    local variant=$1
    shift
    kill "$EG_PID"
    wait "$EG_PID" 2>/dev/null || true
    start_eg "$ALLOWLIST" "$CERT" "$KEY" "$@" --validate-configmap egress-guard/egress-guard-allowlist
    PID_OF[eg]=$EG_PID
    measure "warm-eg-$variant" eg "$BODY_ALLOW" -z 2s -c 16
    local name=tput-eg-c16-$variant
    log "throughput egress-guard $* c=16 ($DUR)"
    measure "$name" eg "$BODY_ALLOW" -z "$DUR" -c 16
    RPS[eg-$variant]=$(oha_rps "$name")
    THROUGHPUT_ROWS+=("| egress-guard $* | github-api (allowed) | 16 | ${RPS[eg-$variant]} | $(ratio "${RPS[eg-$variant]}" "${RPS[bare-16]}") | $(oha_pct_ms "$name" p50) | $(oha_pct_ms "$name" p99) | $(oha_max_ms "$name") | $(oha_failed "$name") | $CPU_US | $OTHER |")
}

# Logging cost: the same c=16 run without the per-request line, and with JSON lines as
# the Deployment writes them.
log_variant warn --log-level warn
log_variant json --log-format json

for c in 16 64; do
    for s in bare eg; do
        r=$(ratio "${RPS[$s-$c]}" "${RPS[bare-$c]}")
        THROUGHPUT_ROWS=("${THROUGHPUT_ROWS[@]/RATIO_$s-$c/$r}")
    done
done

verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "**missed**"; fi; }
R16=$(awk -v a="${RPS[eg-16]}" -v b="${RPS[bare-16]}" 'BEGIN { printf "%.3f", a / b }')

OUT=$(results_file load)
{
    echo "# egress-guard load test, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    machine_line
    echo "Allowlist: $ENTRIES entries (bench/allowlist_gen.rs), loaded in ${LOAD_MS} ms. Loopback, TLS 1.3 (ring), HTTP/1.1, oha on the same 2 cores."
    echo "Bodies: tests/fixtures/admission/validate-create-serviceentry-v1-{github-api,exfil}.json. Runs of $DUR."
    echo "\"other CPU\": share of both cores used by processes other than the server and oha during the run; above ~10% the row is disturbed."
    echo
    echo "## Throughput (keep-alive)"
    echo
    echo "| server | body | c | rps | vs bare | p50 ms | p99 ms | max ms | failed | server CPU µs/req | other CPU |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${THROUGHPUT_ROWS[@]}"
    echo
    echo "## Latency at a fixed rate (16 connections, latency-corrected, first ${SKIP_S} s dropped)"
    echo
    echo "| server | body | target rps | achieved rps | n | p50 ms | p99 ms | p99.9 ms | max ms | max ms (whole run) | failed | server CPU µs/req | other CPU |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${RATE_ROWS[@]}"
    echo
    echo "## Server CPU per review at a fixed $RATE rps (16 connections, keep-alive)"
    echo
    echo "| body | server | achieved rps | server CPU µs/review | p99 ms | failed | other CPU |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${CPU_ROWS[@]}"
    echo
    echo "## New TLS connection per request (--disable-keepalive)"
    echo
    echo "| server | c | rps | p50 ms | p99 ms | max ms | failed | server CPU µs/req | other CPU |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${NOKA_ROWS[@]}"
    echo
    echo "## Memory"
    echo
    echo "| server | idle VmRSS MiB | under load VmRSS MiB (max sampled) | after runs VmRSS MiB | VmHWM MiB |"
    echo "|---|---|---|---|---|"
    echo "| egress-guard ($ENTRIES entries) | $EG_IDLE | ${LOAD_RSS[eg]} | $EG_END | $EG_HWM |"
    echo "| bare | $BARE_IDLE | ${LOAD_RSS[bare]} | $BARE_END | $BARE_HWM |"
    echo
    echo "Server counters: egress_guard_requests_total $REQS, egress_guard_bad_requests_total $BAD; log $LOG_LINES lines / $LOG_KIB KiB, WARN/ERROR lines: $SERVER_ERRORS."
    echo
    echo "## Targets"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    for body in ALLOW POD DEPLOY CONFIGMAP; do
        echo "| CPU per review at $RATE rps <= bare's, $body | ${CPU_AT[eg-$body]} vs ${CPU_AT[bare-$body]} µs | $(verdict "${CPU_AT[eg-$body]} <= ${CPU_AT[bare-$body]}") |"
    done
    echo "| /validate throughput at c=16 >= 90% of bare | $(ratio "${RPS[eg-16]}" "${RPS[bare-16]}") (${RPS[eg-16]} vs ${RPS[bare-16]} rps) | $(verdict "$R16 >= 0.90") |"
    for q in 1000 2000; do
        echo "| p99 at $q rps <= bare's | ${P99[eg-$q]} vs ${P99[bare-$q]} ms | $(verdict "${P99[eg-$q]} <= ${P99[bare-$q]}") |"
    done
    echo "| RSS <= 32 MiB with $ENTRIES entries, after the runs | $EG_END MiB (peak $EG_HWM MiB) | $(verdict "$EG_END <= 32") |"
} | tee "$OUT"
log "written to $OUT"
