#!/usr/bin/env bash
# Reload test (issue 8): /validate latency while the 100,000-entry allowlist file is
# replaced every 100 ms, and the time from a file change to new decisions.
#
#   bash bench/reload.sh              # RELOAD_DUR=20s, SWAP_MS=100, FLIPS=20
#
# 1. baseline: 1,000 rps for BASE_DUR without reloads;
# 2. 1,000 rps for RELOAD_DUR while a writer atomically renames one of two different
#    valid versions (both allow the review) over the live file every SWAP_MS;
# 3. FLIPS times: swap in a version without api.github.com (or with it again) and poll
#    /validate on a kept-alive connection until the decision flips.
# Reports p50/p99/max latency, requests over 10 ms, reloads done vs. swaps written, the
# load time (log `took_ms` and the egress_guard_allowlist_load_seconds histogram),
# VmHWM, and the flip distribution. Writes bench/results/reload-<date>.md.
# Targets: reload of 100,000 entries < 300 ms; no request over 10 ms while reloads run.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BASE_DUR=${BASE_DUR:-10s}
RELOAD_DUR=${RELOAD_DUR:-20s}
SWAP_MS=${SWAP_MS:-100}
FLIPS=${FLIPS:-20}
RATE=${RATE:-1000}
SKIP_S=0.5

build
ensure_oha

log "scratch: $WORK"
dev_certs "$WORK/certs"
CA=$WORK/certs/ca.crt
gen_allowlist "$WORK/a.yaml" "$ENTRIES" --tag 1
gen_allowlist "$WORK/b.yaml" "$ENTRIES" --tag 2
gen_allowlist "$WORK/deny.yaml" "$ENTRIES" --tag 3 --without-github
mkdir -p "$WORK/live"
LIVE=$WORK/live/allowlist.yaml
cp "$WORK/a.yaml" "$LIVE"

start_eg "$LIVE" "$WORK/certs/tls.crt" "$WORK/certs/tls.key"
[[ $(review "$EG_URL" "$BODY_ALLOW" "$CA") == true ]] || die "egress-guard does not allow $BODY_ALLOW"
IDLE_RSS=$(rss_mib "$EG_PID" VmRSS)

rate_run() { # NAME DURATION
    oha_run "$1" --cacert "$CA" -D "$BODY_ALLOW" -z "$2" -c 16 -q "$RATE" \
        --latency-correction --db-url "$WORK/$1.db" "$EG_URL/validate"
}
over_10ms() { # NAME: requests slower than 10 ms after SKIP_S
    "$PY" - "$WORK/$1.db" "$SKIP_S" <<'EOF'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(
    "SELECT COUNT(*) FROM oha WHERE COALESCE(start_latency_correction, start) >= ?"
    " AND end - COALESCE(start_latency_correction, start) > 0.010", (float(sys.argv[2]),)).fetchone()[0])
EOF
}

log "warm-up"
oha_run warm --cacert "$CA" -D "$BODY_ALLOW" -z 2s -c 16 "$EG_URL/validate"

log "baseline: $RATE rps for $BASE_DUR, no reloads"
rate_run base "$BASE_DUR"
read -r B_N B_P50 B_P99 B_P999 B_MAX < <(db_stats base "$SKIP_S")
B_OVER=$(over_10ms base)

# Writer: alternate a/b into the live file every SWAP_MS (temp file + rename).
swapper() {
    local i=0 src
    while [[ -e $WORK/swap.run ]]; do
        if ((i % 2)); then src=$WORK/a.yaml; else src=$WORK/b.yaml; fi
        cp "$src" "$WORK/live/.allowlist.tmp"
        mv -f "$WORK/live/.allowlist.tmp" "$LIVE"
        i=$((i + 1))
        echo "$i" >"$WORK/swaps"
        sleep "$(awk -v ms="$SWAP_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
    done
}

OK0=$(metric 'egress_guard_allowlist_reloads_total{result="success"}')
LOGLINES0=$(wc -l <"$WORK/eg.log")
log "reloads: $RATE rps for $RELOAD_DUR while the allowlist is replaced every $SWAP_MS ms"
touch "$WORK/swap.run"
swapper &
SWAPPER=$!
PIDS+=("$SWAPPER")
rate_run reload "$RELOAD_DUR"
rm -f "$WORK/swap.run"
wait "$SWAPPER" || true
SWAPS=$(cat "$WORK/swaps")
sleep 1 # let the last reload finish
OK1=$(metric 'egress_guard_allowlist_reloads_total{result="success"}')
ERR1=$(metric 'egress_guard_allowlist_reloads_total{result="error"}')
read -r R_N R_P50 R_P99 R_P999 R_MAX < <(db_stats reload "$SKIP_S")
R_OVER=$(over_10ms reload)
R_FAILED=$(oha_failed reload)
[[ $R_FAILED == 0 ]] || log "failed requests during reloads: $(oha_errors reload)"
tail -n +"$((LOGLINES0 + 1))" "$WORK/eg.log" >"$WORK/eg-reload.log"
read -r T_N T_P50 T_P90 T_MAX < <(took_ms_stats "$WORK/eg-reload.log")
read -r H_N H_MEAN < <(load_time_stats)
HWM=$(rss_mib "$EG_PID" VmHWM)
AFTER_RSS=$(rss_mib "$EG_PID" VmRSS)

LOGLINES1=$(wc -l <"$WORK/eg.log")
log "flips: $FLIPS changes of api.github.com in/out, polling /validate"
FLIP_OUT=$("$PY" "$(dirname "${BASH_SOURCE[0]}")/flip_latency.py" "$EG_URL" "$CA" "$LIVE" \
    "$WORK/a.yaml" "$WORK/deny.yaml" "$BODY_ALLOW" "$FLIPS") || true
echo "$FLIP_OUT" >&2
read -r _ F_N F_P50 F_P90 F_MAX _ F_TIMEOUTS < <(tail -1 <<<"$FLIP_OUT")
# The load time of the flip reloads alone (quiet machine, no concurrent load).
tail -n +"$((LOGLINES1 + 1))" "$WORK/eg.log" | grep 'allowlist loaded' >"$WORK/eg-flips.log" || true
read -r FT_N FT_P50 FT_P90 FT_MAX < <(took_ms_stats "$WORK/eg-flips.log")
read -r H2_N H2_MEAN < <(load_time_stats)

verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "**missed**"; fi; }
OUT=$(results_file reload)
{
    echo "# egress-guard allowlist reload test, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    machine_line
    echo "Allowlist: $ENTRIES entries, $(du -k "$WORK/a.yaml" | cut -f1) KiB; 16 connections, latency-corrected, first ${SKIP_S} s dropped."
    echo
    echo "## /validate at $RATE rps"
    echo
    echo "| phase | n | p50 ms | p99 ms | p99.9 ms | max ms | requests > 10 ms | failed |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| no reloads ($BASE_DUR) | $B_N | $B_P50 | $B_P99 | $B_P999 | $B_MAX | $B_OVER | $(oha_failed base) |"
    echo "| file replaced every $SWAP_MS ms ($RELOAD_DUR) | $R_N | $R_P50 | $R_P99 | $R_P999 | $R_MAX | $R_OVER | $R_FAILED |"
    echo
    echo "## Reloads"
    echo
    echo "| what | value |"
    echo "|---|---|"
    echo "| swaps written during the loaded phase | $SWAPS |"
    echo "| reloads done (reloads_total{result=success} delta) | $((OK1 - OK0)) (errors: $ERR1) |"
    echo "| load time under $RATE rps, log took_ms: n / p50 / p90 / max | $T_N / $T_P50 / $T_P90 / $T_MAX ms |"
    echo "| load time, quiet (flip reloads), took_ms: n / p50 / p90 / max | $FT_N / $FT_P50 / $FT_P90 / $FT_MAX ms |"
    echo "| egress_guard_allowlist_load_seconds: count / mean (whole test) | $H2_N / $H2_MEAN ms |"
    echo "| VmRSS idle / after reloads / VmHWM | $IDLE_RSS / $AFTER_RSS / $HWM MiB |"
    echo
    echo "## File change to new decisions ($FLIPS flips of api.github.com, polled on one keep-alive connection)"
    echo
    echo "| flips seen | p50 ms | p90 ms | max ms | not seen within 10 s |"
    echo "|---|---|---|---|---|"
    echo "| $F_N | $F_P50 | $F_P90 | $F_MAX | $F_TIMEOUTS |"
    echo
    echo "## Targets"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    echo "| $ENTRIES-entry reload < 300 ms | quiet p50 $FT_P50 ms, max $FT_MAX ms; under load max $T_MAX ms | $(verdict "$FT_MAX < 300 && $T_MAX < 300") |"
    echo "| no request over 10 ms while reloads run | $R_OVER requests > 10 ms, max $R_MAX ms | $(verdict "$R_OVER == 0") |"
} | tee "$OUT"
log "written to $OUT"
