#!/usr/bin/env bash
# The distance to the floor (issue 30): egress-guard serve against the floor server
# (bench/bare_server.rs --floor: the same TLS, HTTP and runtime stack reading the body
# and answering a constant, no parse) and the bare server (parses into a Value), on one
# machine in one run, per review kind. About 2 minutes after the build.
#
#   bash bench/floor.sh                       # DUR=10s, RATE=4000, ENTRIES=100000
#   DUR=5s SKIP_BUILD=1 bash bench/floor.sh
#
# Per review (the ServiceEntry, the injected Pod, the Deployment):
#   - server CPU per review at a fixed RATE rps, c=16 (from /proc/<pid>/stat);
#   - throughput at c=16 (HTTP/1.1 keep-alive over TLS);
# and egress-guard's RSS after the load (VmRSS) with the ENTRIES allowlist.
# Targets: CPU per review <= 1.8x the floor's, throughput >= 0.55 of the floor's, for the
# ServiceEntry and the Pod; RSS <= 32 MiB.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DUR=${DUR:-10s}
RATE=${RATE:-4000}

build
ensure_oha
dev_certs "$WORK/certs"
CA=$WORK/certs/ca.crt
mkdir -p "$WORK/allowlist"
ALLOWLIST=$WORK/allowlist/allowlist.yaml
gen_allowlist "$ALLOWLIST" "$ENTRIES"
start_eg "$ALLOWLIST" "$WORK/certs/tls.crt" "$WORK/certs/tls.key"
start_bare "$WORK/certs/tls.crt" "$WORK/certs/tls.key" "$CA"
start_floor "$WORK/certs/tls.crt" "$WORK/certs/tls.key" "$CA"
[[ $(review "$EG_URL" "$BODY_ALLOW" "$CA") == true ]] || die "egress-guard does not allow $BODY_ALLOW"
[[ $(review "$FLOOR_URL" "$BODY_ALLOW" "$CA") == true ]] || die "the floor server does not answer"

declare -A PID_OF=([eg]=$EG_PID [bare]=$BARE_PID [floor]=$FLOOR_PID)
declare -A URL_OF=([eg]=$EG_URL [bare]=$BARE_URL [floor]=$FLOOR_URL)
declare -A LOAD_RSS=([eg]=0 [bare]=0 [floor]=0)
declare -A BODIES=(
    [serviceentry]=$BODY_ALLOW
    [pod]=$FIXTURES/validate-create-pod-v1-app-injected.json
    [deployment]=$FIXTURES/validate-create-deployment-v1-shop.json
)

log "warm-up (3 s each)"
for s in eg bare floor; do
    measure "warm-$s" "$s" "$BODY_ALLOW" -z 3s -c 16
done

declare -A CPU TPUT
ROWS=()
VERDICTS=()
for kind in serviceentry pod deployment; do
    body=${BODIES[$kind]}
    for s in floor bare eg; do
        log "$kind: $s at $RATE rps ($DUR)"
        measure "cpu-$s-$kind" "$s" "$body" -z "$DUR" -c 16 -q "$RATE"
        CPU[$s-$kind]=$CPU_US
        log "$kind: $s throughput c=16 ($DUR)"
        measure "tput-$s-$kind" "$s" "$body" -z "$DUR" -c 16
        TPUT[$s-$kind]=$(oha_rps "tput-$s-$kind")
        [[ $OTHER == 0% || $OTHER == 1% || $OTHER == 2% ]] || log "$kind $s: $OTHER of the CPU went elsewhere"
    done
    cpu_ratio=$(awk -v a="${CPU[eg-$kind]}" -v b="${CPU[floor-$kind]}" 'BEGIN { printf "%.2f", a / b }')
    tput_ratio=$(awk -v a="${TPUT[eg-$kind]}" -v b="${TPUT[floor-$kind]}" 'BEGIN { printf "%.2f", a / b }')
    bare_cpu=$(awk -v a="${CPU[bare-$kind]}" -v b="${CPU[floor-$kind]}" 'BEGIN { printf "%.2f", a / b }')
    bare_tput=$(awk -v a="${TPUT[bare-$kind]}" -v b="${TPUT[floor-$kind]}" 'BEGIN { printf "%.2f", a / b }')
    ROWS+=("| $kind ($(($(stat -c %s "$body") / 1024)) KiB) | ${CPU[eg-$kind]} | ${CPU[bare-$kind]} | ${CPU[floor-$kind]} | $cpu_ratio× | $bare_cpu× | ${TPUT[eg-$kind]} | ${TPUT[bare-$kind]} | ${TPUT[floor-$kind]} | $tput_ratio | $bare_tput |")
    if [[ $kind != deployment ]]; then
        VERDICTS+=("| $kind CPU ≤ 1.8× floor | $cpu_ratio× | $(awk -v r="$cpu_ratio" 'BEGIN { print (r <= 1.8) ? "met" : "not met" }') |")
        VERDICTS+=("| $kind throughput ≥ 0.55 of floor | $tput_ratio | $(awk -v r="$tput_ratio" 'BEGIN { print (r >= 0.55) ? "met" : "not met" }') |")
    fi
done
RSS=$(rss_mib "$EG_PID" VmRSS)
VERDICTS+=("| RSS after load, $ENTRIES entries ≤ 32 MiB | $RSS MiB | $(awk -v r="$RSS" 'BEGIN { print (r <= 32) ? "met" : "not met" }') |")

OUT=$(results_file floor)
{
    echo "# egress-guard against the floor, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    machine_line
    echo
    echo "CPU per review in µs at $RATE rps (c=16); throughput in reviews/s at c=16; $DUR per run; ratios to the floor."
    echo
    echo "| review | egress-guard CPU | bare CPU | floor CPU | egress-guard/floor | bare/floor | egress-guard rps | bare rps | floor rps | egress-guard/floor | bare/floor |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "| target | measured | |"
    echo "|---|---|---|"
    printf '%s\n' "${VERDICTS[@]}"
} | tee "$OUT"
log "written to $OUT"
