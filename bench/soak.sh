#!/usr/bin/env bash
# Soak test (issue 9 item 3; not run in CI): DURATION seconds at RATE rps on /validate
# while the allowlist file is swapped every SWAP_S seconds (alternating two valid
# 100,000-entry versions) and the serving certificate is rotated every ROTATE_S seconds.
#
#   bash bench/soak.sh                  # DURATION=600 RATE=1000 SWAP_S=1 ROTATE_S=60
#   DURATION=60 bash bench/soak.sh      # a short run
#
# Certificates rotate the way kubelet updates a mounted Secret: the files are symlinks
# through `..data`, which is atomically re-pointed to a new directory. The two
# certificate sets come from `egress-guard serve`'s development CA (SANs localhost,
# 127.0.0.1, ::1) and have different CAs; the clients trust both (bundle), so a
# handshake verifies whichever certificate is served. Keep-alive connections keep their
# session, so a second stream makes a new TLS connection per request (NEWCONN_RATE
# rps) to exercise the rotated certificate.
# Reports failed requests (target 0), p50/p99/max latency, reloads, and RSS every 10 s.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DURATION=${DURATION:-600}
RATE=${RATE:-1000}
SWAP_S=${SWAP_S:-1}
ROTATE_S=${ROTATE_S:-60}
NEWCONN_RATE=${NEWCONN_RATE:-20}
SAMPLE_S=${SAMPLE_S:-10}
SKIP_S=0.5

build
ensure_oha

log "scratch: $WORK"
dev_certs "$WORK/certs1"
dev_certs "$WORK/certs2"
cat "$WORK/certs1/ca.crt" "$WORK/certs2/ca.crt" >"$WORK/ca-bundle.crt"
CA=$WORK/ca-bundle.crt

# Kubelet-style Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..v1.
TLS=$WORK/tls
mkdir -p "$TLS/..v0"
cp "$WORK/certs1/tls.crt" "$WORK/certs1/tls.key" "$TLS/..v0/"
ln -s ..v0 "$TLS/..data"
ln -s ..data/tls.crt "$TLS/tls.crt"
ln -s ..data/tls.key "$TLS/tls.key"
rotate_cert() { # N: point ..data at a new directory holding set (N % 2) + 1
    local n=$1 set=$(( $1 % 2 + 1 ))
    mkdir -p "$TLS/..v$n"
    cp "$WORK/certs$set/tls.crt" "$WORK/certs$set/tls.key" "$TLS/..v$n/"
    ln -sfn "..v$n" "$TLS/..data_tmp"
    mv -Tf "$TLS/..data_tmp" "$TLS/..data"
    rm -rf "$TLS/..v$((n - 1))"
}

gen_allowlist "$WORK/a.yaml" "$ENTRIES" --tag 1
gen_allowlist "$WORK/b.yaml" "$ENTRIES" --tag 2
mkdir -p "$WORK/live"
LIVE=$WORK/live/allowlist.yaml
cp "$WORK/a.yaml" "$LIVE"

start_eg "$LIVE" "$TLS/tls.crt" "$TLS/tls.key"
[[ $(review "$EG_URL" "$BODY_ALLOW" "$CA") == true ]] || die "egress-guard does not allow $BODY_ALLOW"

# Background writers, all bounded by DURATION and the run flag.
touch "$WORK/soak.run"
allowlist_swapper() {
    local i=0 src
    while [[ -e $WORK/soak.run ]]; do
        sleep "$SWAP_S"
        i=$((i + 1))
        if ((i % 2)); then src=$WORK/b.yaml; else src=$WORK/a.yaml; fi
        cp "$src" "$WORK/live/.allowlist.tmp"
        mv -f "$WORK/live/.allowlist.tmp" "$LIVE"
        echo "$i" >"$WORK/swaps"
    done
}
cert_rotator() {
    local n=0 waited
    while [[ -e $WORK/soak.run ]]; do
        waited=0
        while [[ -e $WORK/soak.run ]] && ((waited < ROTATE_S)); do
            sleep 1
            waited=$((waited + 1))
        done
        [[ -e $WORK/soak.run ]] || break
        n=$((n + 1))
        rotate_cert "$n"
        echo "$n $(date +%s)" >>"$WORK/rotations"
    done
}
rss_sampler() {
    local t0 now
    t0=$(date +%s)
    while [[ -e $WORK/soak.run ]]; do
        now=$(date +%s)
        echo "$((now - t0)) $(rss_mib "$EG_PID" VmRSS) $(rss_mib "$EG_PID" VmHWM)" >>"$WORK/rss.txt"
        sleep "$SAMPLE_S"
    done
}
allowlist_swapper &
PIDS+=("$!")
cert_rotator &
PIDS+=("$!")
rss_sampler &
PIDS+=("$!")

S0=$(cpu_ticks "$EG_PID")
M0=$(machine_ticks)
C0=$(children_ticks)
log "soak: $RATE rps (keep-alive) + $NEWCONN_RATE rps (new connection each) for ${DURATION}s"
"$OHA" --no-tui --output-format json -w -m POST -T application/json --cacert "$CA" \
    -D "$BODY_ALLOW" -z "${DURATION}s" -c 2 -q "$NEWCONN_RATE" --disable-keepalive \
    "$EG_URL/validate" >"$WORK/newconn.json" 2>"$WORK/newconn.err" &
NEWCONN=$!
PIDS+=("$NEWCONN")
oha_run soak --cacert "$CA" -D "$BODY_ALLOW" -z "${DURATION}s" -c 16 -q "$RATE" \
    --latency-correction --db-url "$WORK/soak.db" "$EG_URL/validate"
wait "$NEWCONN" || die "new-connection stream failed: $(cat "$WORK/newconn.err")"
S1=$(cpu_ticks "$EG_PID")
M1=$(machine_ticks)
C1=$(children_ticks)
rm -f "$WORK/soak.run"
sleep 2
# CPU used by anything but this server, oha and the writers' own shells, % of all cores.
OTHER=$(awk -v m0="$M0" -v m1="$M1" -v s="$((S1 - S0))" -v c="$((C1 - C0))" 'BEGIN {
    split(m0, a, " "); split(m1, b, " "); busy = b[1] - a[1]; total = b[2] - a[2]
    o = (total > 0) ? (100 * (busy - s - c) / total) : 0
    printf "%.0f%%", (o < 0) ? 0 : o }')

read -r N P50 P99 P999 MAX < <(db_stats soak "$SKIP_S")
FAILED=$(oha_failed soak)
NC_FAILED=$(oha_failed newconn)
NC_TOTAL=$(oha_total newconn)
[[ $FAILED == 0 ]] || log "keep-alive stream failures: $(oha_errors soak)"
[[ $NC_FAILED == 0 ]] || log "new-connection stream failures: $(oha_errors newconn)"
AL_OK=$(metric 'egress_guard_allowlist_reloads_total{result="success"}')
AL_ERR=$(metric 'egress_guard_allowlist_reloads_total{result="error"}')
TLS_OK=$(metric 'egress_guard_tls_reloads_total{result="success"}')
TLS_ERR=$(metric 'egress_guard_tls_reloads_total{result="error"}')
ROTATIONS=$(wc -l <"$WORK/rotations" 2>/dev/null || echo 0)
SWAPS=$(cat "$WORK/swaps" 2>/dev/null || echo 0)
WARNS=$(grep -cE ' (ERROR|WARN) ' "$WORK/eg.log" || true)
read -r T_N T_P50 T_P90 T_MAX < <(took_ms_stats "$WORK/eg.log" 1)
# The certificate in use at the end must be the last one rotated in.
SERVED=$(echo | openssl s_client -connect "127.0.0.1:$EG_PORT" 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2 || true)
WANT=$(openssl x509 -noout -fingerprint -sha256 -in "$TLS/tls.crt" 2>/dev/null | cut -d= -f2 || true)
RSS_FIRST=$(head -1 "$WORK/rss.txt" | cut -d' ' -f2)
RSS_LAST=$(tail -1 "$WORK/rss.txt" | cut -d' ' -f2)
RSS_MAX=$(cut -d' ' -f2 "$WORK/rss.txt" | sort -g | tail -1)
HWM=$(rss_mib "$EG_PID" VmHWM)

verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "**missed**"; fi; }
OUT=$(results_file soak)
{
    echo "# egress-guard soak test, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    machine_line
    echo "${DURATION} s at $RATE rps (16 keep-alive connections, latency-corrected, first ${SKIP_S} s dropped) plus $NEWCONN_RATE rps with a new TLS connection each;"
    echo "allowlist ($ENTRIES entries) swapped every ${SWAP_S} s, certificate rotated every ${ROTATE_S} s (kubelet-style ..data symlink swap, alternating two CAs)."
    echo
    echo "| stream | requests | failed | p50 ms | p99 ms | p99.9 ms | max ms |"
    echo "|---|---|---|---|---|---|---|"
    echo "| keep-alive $RATE rps | $(oha_total soak) | $FAILED | $P50 | $P99 | $P999 | $MAX |"
    echo "| new connection $NEWCONN_RATE rps | $NC_TOTAL | $NC_FAILED | $(oha_pct_ms newconn p50) | $(oha_pct_ms newconn p99) | - | $(oha_max_ms newconn) |"
    echo
    echo "| reloads | written | loaded ok | errors |"
    echo "|---|---|---|---|"
    echo "| allowlist | $SWAPS swaps | $((AL_OK - 1)) (+1 initial) | $AL_ERR |"
    echo "| certificate | $ROTATIONS rotations | $((TLS_OK - 1)) (+1 initial) | $TLS_ERR |"
    echo
    echo "Allowlist load time (took_ms, reloads only): n $T_N, p50 $T_P50 ms, p90 $T_P90 ms, max $T_MAX ms."
    echo "Certificate served at the end is the last one rotated in: $([[ -n $SERVED && $SERVED == "$WANT" ]] && echo yes || echo "**no**")."
    echo "WARN/ERROR log lines: $WARNS. CPU used by other processes during the run: $OTHER of both cores (includes the cp/mv writers; above ~10% the latency figures are disturbed)."
    echo
    echo "RSS (MiB) every ${SAMPLE_S} s: first $RSS_FIRST, last $RSS_LAST, max $RSS_MAX, VmHWM $HWM."
    echo
    echo "| t s | VmRSS MiB | VmHWM MiB |"
    echo "|---|---|---|"
    awk '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$WORK/rss.txt"
    echo
    echo "## Targets"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    echo "| 0 failed requests | $FAILED + $NC_FAILED | $(verdict "$FAILED + $NC_FAILED == 0") |"
    echo "| p99 < 2 ms at $RATE rps | $P99 ms | $(verdict "$P99 < 2") |"
    echo "| RSS < 64 MiB | VmHWM $HWM MiB | $(verdict "$HWM < 64") |"
} | tee "$OUT"
log "written to $OUT"
