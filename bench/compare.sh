#!/usr/bin/env bash
# compare.sh: every door of Chaperone, OPA and the transport floor side by
# side, in one run, on this machine, with the server CPU per decision.
#
# Builds bin/chaperone, bin/floor and bin/opa (OPA from the version pinned
# in bench/opa/go.mod, the same as the main go.mod) and starts on loopback:
#   ref    chaperone serve (the reference bundle) --gateway <generated>
#   rbac   chaperone serve --bundle bench/rbac     (Cedar RBAC + FHIR consents)
#   opa    opa run --server bench/opa/policy.rego bench/opa/data.json
#   floor  bench/floor (a do-nothing HTTP server answering every Check ALLOW)
# then, in every round, each target in turn with the same `chaperone bench`
# (--server-pid: the server's utime+stime over the run divided by its
# answered requests):
#   ref-connect ref-json ref-grpc ref-authzen    reference scenario (16 requests)
#   ref-gw-json ref-gw-ext-authz                 gateway scenario (12 request-phase
#                                                requests a gateway door can carry)
#   rbac-connect rbac-json rbac-grpc opa-json    reference scenario, bench/rbac vs OPA
#   floor-connect                                reference scenario
# and prints one line per run, then per target the range and median over
# the rounds and the ratios, each taken within a round (A and B measured
# minutes apart at most) and then ranged. It stops everything it started,
# also on Ctrl-C.
#
# Environment: DURATION (10s), WARMUP (2s, inside every run), CONCURRENCY
# (8), ROUNDS (3), TARGETS (all of the above, in that order), RATE (unset:
# closed loop; set: open loop at RATE/s for every target), DISTINCT_IDS=1
# (every request for a resource id of its own: decision memos miss as in
# real traffic), SKIP_BUILD=1, SERVE_ARGS (added to both chaperone
# serves), OUT (bench/results/<timestamp>), AUDIT_DIR and KEEP_AUDIT=1
# (Chaperone's audit files, deleted at exit by default), *_PORT. Exit
# status 0, or 1 when a run erred or Chaperone (rbac) and OPA decided a
# different mix.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-}
TARGETS=${TARGETS:-ref-connect ref-json ref-grpc ref-authzen ref-gw-json ref-gw-ext-authz rbac-connect rbac-json rbac-grpc opa-json floor-connect}
OUT=${OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
RBAC_ADDR=127.0.0.1:${CHAP_PORT:-18787}
REF_ADDR=127.0.0.1:${REF_PORT:-18788}
FLOOR_ADDR=127.0.0.1:${FLOOR_PORT:-18789}
OPA_ADDR=127.0.0.1:${OPA_PORT:-18181}
mkdir -p "$OUT" "$ROOT/bin"

pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [[ -n ${AUDIT_DIR:-} && -z ${KEEP_AUDIT:-} ]]; then
		rm -f "$AUDIT_DIR"/rbac.jsonl* "$AUDIT_DIR"/reference.jsonl*
		rmdir "$AUDIT_DIR" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
	echo "building bin/chaperone, bin/floor and bin/opa" >&2
	go build -o bin/chaperone ./cmd/chaperone
	go build -o bin/floor ./bench/floor
	(cd bench/opa && go build -o ../../bin/opa github.com/open-policy-agent/opa)
fi

wait_http() { # URL: up to 10s
	for _ in $(seq 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "compare.sh: $1 did not come up" >&2
	return 1
}

for a in "$RBAC_ADDR" "$REF_ADDR" "$OPA_ADDR" "$FLOOR_ADDR"; do
	if curl -s -o /dev/null "http://$a/" 2>/dev/null; then
		echo "compare.sh: $a is already in use (set CHAP_PORT, REF_PORT, OPA_PORT, FLOOR_PORT)" >&2
		exit 1
	fi
done

# chaperone serve writes the hash-chained audit record of every decision
# (it cannot be turned off: an unaudited decision is a DENY); OPA's
# decision log is off. The audit files (gigabytes per run) go to $AUDIT_DIR
# and are deleted at exit unless KEEP_AUDIT=1.
AUDIT_DIR=${AUDIT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/chaperone-compare-audit.XXXXXX")}
mkdir -p "$AUDIT_DIR"
GW=$OUT/gw
bin/chaperone bench --write-gateway "$GW" >/dev/null
# shellcheck disable=SC2086
bin/chaperone serve --addr "$RBAC_ADDR" --bundle bench/rbac --log-level error \
	--audit-file "$AUDIT_DIR/rbac.jsonl" ${SERVE_ARGS:-} 2>"$OUT/chaperone-rbac.log" &
pids+=($!)
RBAC_PID=$!
# shellcheck disable=SC2086
bin/chaperone serve --addr "$REF_ADDR" --log-level error --gateway "$GW/gateway.yaml" \
	--audit-file "$AUDIT_DIR/reference.jsonl" ${SERVE_ARGS:-} 2>"$OUT/chaperone-reference.log" &
pids+=($!)
REF_PID=$!
bin/opa run --server --addr "$OPA_ADDR" --log-level error --disable-telemetry \
	bench/opa/policy.rego bench/opa/data.json >"$OUT/opa.log" 2>&1 &
pids+=($!)
OPA_PID=$!
bin/floor --addr "$FLOOR_ADDR" 2>"$OUT/floor.log" &
pids+=($!)
FLOOR_PID=$!
wait_http "http://$RBAC_ADDR/healthz"
wait_http "http://$REF_ADDR/healthz"
wait_http "http://$OPA_ADDR/health"
for _ in $(seq 100); do # the floor answers POSTs only
	if curl -s -o /dev/null "http://$FLOOR_ADDR/" 2>/dev/null; then break; fi
	sleep 0.1
done
for p in "${pids[@]}"; do
	kill -0 "$p" # still running: it is the one answering
done

common=(--duration "$DURATION" --warmup "$WARMUP" --concurrency "$CONCURRENCY" --format json --quiet)
if [[ -n $RATE ]]; then common+=(--rate "$RATE"); fi
if [[ -n ${DISTINCT_IDS:-} ]]; then common+=(--distinct-ids); fi
gwargs=(--scenario gateway --gateway "$GW/gateway.yaml" --gateway-key "$GW/end-user-key.json")

run() { # TARGET ROUND
	local args
	case $1 in
	ref-connect) args=(--scenario reference --addr "$REF_ADDR" --server-pid "$REF_PID" --protocol connect) ;;
	ref-json) args=(--scenario reference --addr "$REF_ADDR" --server-pid "$REF_PID" --protocol json) ;;
	ref-grpc) args=(--scenario reference --addr "$REF_ADDR" --server-pid "$REF_PID" --protocol grpc) ;;
	ref-authzen) args=(--scenario reference --addr "$REF_ADDR" --server-pid "$REF_PID" --protocol authzen) ;;
	ref-gw-json) args=("${gwargs[@]}" --addr "$REF_ADDR" --server-pid "$REF_PID" --protocol json) ;;
	ref-gw-ext-authz) args=("${gwargs[@]}" --addr "$REF_ADDR" --server-pid "$REF_PID" --protocol ext-authz) ;;
	rbac-connect) args=(--scenario reference --addr "$RBAC_ADDR" --server-pid "$RBAC_PID" --protocol connect) ;;
	rbac-json) args=(--scenario reference --addr "$RBAC_ADDR" --server-pid "$RBAC_PID" --protocol json) ;;
	rbac-grpc) args=(--scenario reference --addr "$RBAC_ADDR" --server-pid "$RBAC_PID" --protocol grpc) ;;
	opa-json) args=(--scenario reference --addr "$OPA_ADDR" --server-pid "$OPA_PID" --target opa --opa-path /v1/data/chaperone/bench/decision) ;;
	floor-connect) args=(--scenario reference --addr "$FLOOR_ADDR" --server-pid "$FLOOR_PID" --protocol connect --seed-consents=false) ;;
	*)
		echo "compare.sh: unknown target $1" >&2
		return 1
		;;
	esac
	echo "$(date -u +%T) round $2 $1 (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	bin/chaperone bench "${common[@]}" "${args[@]}" >"$OUT/$1.r$2.json"
}

for round in $(seq "$ROUNDS"); do
	for t in $TARGETS; do
		run "$t" "$round"
	done
done

{
	echo "# compare.sh $(date -u +%FT%TZ) at $(git rev-parse --short HEAD 2>/dev/null || echo '?'): $(nproc) CPUs, $ROUNDS rounds, duration $DURATION, warmup $WARMUP, concurrency $CONCURRENCY, $(if [[ -n $RATE ]]; then echo "open loop at $RATE/s"; else echo "closed loop"; fi)${DISTINCT_IDS:+, distinct resource ids}"
	echo "# load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
	python3 - "$OUT" "$ROUNDS" $TARGETS <<'PY'
import json, statistics, sys
out, rounds, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {(t, r): json.load(open(f"{out}/{t}.r{r}.json")) for t in targets for r in range(1, rounds + 1)}
cpu = lambda t, r: res[(t, r)].get("serverCpuMicrosPerRequest", 0.0)
def rng(xs, fmt="{:.1f}"):
    xs = sorted(xs)
    return f"{fmt.format(xs[0])}-{fmt.format(xs[-1])} ({fmt.format(statistics.median(xs))})"
print(f"{'target':<18} {'round':>5} {'checks/s':>9} {'server µs/req':>13} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  decisions")
for r in range(1, rounds + 1):
    for t in targets:
        x = res[(t, r)]
        dec = " ".join(f"{k}={v}" for k, v in sorted(x["decisions"].items()))
        print(f"{t:<18} {r:>5} {x['throughput']:>9.0f} {cpu(t, r):>13.1f} {x['latency']['p50']:>8.3f} {x['latency']['p99']:>8.3f} {x['errors']:>6}  {dec}")
print()
print(f"{'target':<18} {'server µs per decision: min-max (median)':<40} {'p99 ms: min-max (median)'}")
for t in targets:
    print(f"{t:<18} {rng([cpu(t, r) for r in range(1, rounds + 1)]):<40} {rng([res[(t, r)]['latency']['p99'] for r in range(1, rounds + 1)], '{:.3f}')}")
print()
print("ratios of server CPU per decision, each within a round: min-max (median)")
for a, b, what in [
    ("ref-json", "ref-connect", "Connect JSON / Connect protobuf (reference)"),
    ("ref-connect", "floor-connect", "Connect protobuf / floor"),
    ("ref-grpc", "ref-connect", "gRPC (h2c) / Connect protobuf (reference)"),
    ("ref-authzen", "ref-json", "AuthZEN / Connect JSON (reference)"),
    ("ref-gw-ext-authz", "ref-gw-json", "ext_authz / Connect JSON (gateway scenario)"),
    ("rbac-json", "rbac-connect", "Connect JSON / Connect protobuf (bench/rbac)"),
    ("rbac-connect", "floor-connect", "Connect protobuf (bench/rbac) / floor"),
    ("rbac-grpc", "rbac-connect", "gRPC (h2c) / Connect protobuf (bench/rbac)"),
    ("opa-json", "rbac-json", "OPA / Chaperone bench/rbac, JSON vs JSON"),
    ("opa-json", "ref-json", "OPA / Chaperone reference, JSON vs JSON"),
]:
    if a in targets and b in targets:
        xs = [cpu(a, r) / cpu(b, r) for r in range(1, rounds + 1) if cpu(b, r) > 0]
        if xs:
            print(f"  {what:<48} {rng(xs, '{:.2f}')}")
if "ref-connect" in targets and "floor-connect" in targets:
    xs = [res[("ref-connect", r)]["latency"]["p99"] / res[("floor-connect", r)]["latency"]["p99"] for r in range(1, rounds + 1)]
    print(f"  {'p99 Connect protobuf / floor p99':<48} {rng(xs, '{:.2f}')}")
PY
} | tee "$OUT/summary.txt"

# Every run must have answered everything, and Chaperone (bench/rbac) and
# OPA must have decided alike (same mix).
status=0
for f in "$OUT"/*.r*.json; do
	if [[ $(jq .errors "$f") != 0 ]]; then
		echo "compare.sh: $(basename "$f"): errors" >&2
		status=1
	fi
done
if [[ " $TARGETS " == *" rbac-json "* && " $TARGETS " == *" opa-json "* ]]; then
	for round in $(seq "$ROUNDS"); do
		mix='.decisions | ([.[]] | add) as $t | with_entries(.value = (.value * 100 / $t | round))'
		c=$(jq -c "$mix" "$OUT/rbac-json.r$round.json")
		o=$(jq -c "$mix" "$OUT/opa-json.r$round.json")
		if [[ $c != "$o" ]]; then
			echo "compare.sh: round $round: decision mix differs: chaperone $c, opa $o" >&2
			status=1
		fi
	done
fi
echo "results in $OUT" >&2
exit $status
