#!/usr/bin/env bash
# compare.sh: Chaperone and OPA side by side, in one run, on this machine.
#
# Builds bin/chaperone and bin/opa (OPA from the version pinned in
# bench/opa/go.mod, the same as the main go.mod), starts
#   chaperone serve --bundle bench/rbac           (Cedar RBAC + FHIR consents)
#   opa run --server bench/opa/policy.rego bench/opa/data.json
# on loopback, drives each in turn with the same `chaperone bench` (the
# reference scenario's 16 requests; Connect protobuf and Connect JSON to
# Chaperone, {"input": …} JSON to OPA's REST data API), then, for
# information, the reference bundle and bench/floor (a do-nothing HTTP
# server answering every Check ALLOW: the transport floor of this machine),
# and prints a table and the ratios. It stops
# everything it started, also on Ctrl-C.
#
# Environment: DURATION (30s), WARMUP (5s), CONCURRENCY (8), ROUNDS (1;
# every round runs each target once, in turn), RATE (unset: closed loop;
# set: open loop at RATE/s for every target), DISTINCT_IDS=1 (every request
# gets a resource id of its own, so Chaperone's decision memo misses as in
# real traffic; see chaperone bench --distinct-ids), SKIP_BUILD=1, OUT
# (bench/results/<timestamp>), AUDIT_DIR and KEEP_AUDIT=1 (Chaperone's
# audit files, deleted at exit by default). Exit status 0, or 1 when a run failed or
# the two sides disagreed on the decisions.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-5s}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-1}
RATE=${RATE:-}
OUT=${OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
CHAP_ADDR=127.0.0.1:${CHAP_PORT:-18787}
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

for a in "$CHAP_ADDR" "$REF_ADDR" "$OPA_ADDR" "$FLOOR_ADDR"; do
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
bin/chaperone serve --addr "$CHAP_ADDR" --bundle bench/rbac --log-level error \
	--audit-file "$AUDIT_DIR/rbac.jsonl" 2>"$OUT/chaperone.log" &
pids+=($!)
bin/chaperone serve --addr "$REF_ADDR" --log-level error \
	--audit-file "$AUDIT_DIR/reference.jsonl" 2>"$OUT/chaperone-reference.log" &
pids+=($!)
bin/opa run --server --addr "$OPA_ADDR" --log-level error --disable-telemetry \
	bench/opa/policy.rego bench/opa/data.json >"$OUT/opa.log" 2>&1 &
pids+=($!)
bin/floor --addr "$FLOOR_ADDR" 2>"$OUT/floor.log" &
pids+=($!)
wait_http "http://$CHAP_ADDR/healthz"
wait_http "http://$REF_ADDR/healthz"
wait_http "http://$OPA_ADDR/health"
for _ in $(seq 100); do # the floor answers POSTs only
	if curl -s -o /dev/null "http://$FLOOR_ADDR/" 2>/dev/null; then break; fi
	sleep 0.1
done
for p in "${pids[@]}"; do
	kill -0 "$p" # still running: it is the one answering
done

common=(--scenario reference --duration "$DURATION" --warmup "$WARMUP" --concurrency "$CONCURRENCY" --format json --quiet)
if [[ -n $RATE ]]; then common+=(--rate "$RATE"); fi
if [[ -n ${DISTINCT_IDS:-} ]]; then common+=(--distinct-ids); fi

run() { # NAME ARGS...
	local name=$1
	shift
	echo "$(date -u +%T) $name (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	bin/chaperone bench "${common[@]}" "$@" >"$OUT/$name.r$round.json"
}

for round in $(seq "$ROUNDS"); do
	run chaperone-connect --addr "$CHAP_ADDR" --protocol connect
	run chaperone-json --addr "$CHAP_ADDR" --protocol json
	run opa-json --addr "$OPA_ADDR" --target opa --opa-path /v1/data/chaperone/bench/decision
	run chaperone-reference-connect --addr "$REF_ADDR" --protocol connect
	run floor-connect --addr "$FLOOR_ADDR" --protocol connect --seed-consents=false
done

{
	echo "# compare.sh $(date -u +%FT%TZ): $(nproc) CPUs, duration $DURATION, warmup $WARMUP, concurrency $CONCURRENCY, ${RATE:+open loop at $RATE/s}${RATE:-closed loop}${DISTINCT_IDS:+, distinct resource ids}"
	echo "# load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf "%-30s %5s %12s %9s %9s %9s %9s %7s  %s\n" target round throughput/s p50_ms p90_ms p99_ms p99.9_ms errors decisions
	for round in $(seq "$ROUNDS"); do
		for name in chaperone-connect chaperone-json opa-json chaperone-reference-connect floor-connect; do
			jq -r --arg n "$name" --arg r "$round" \
				'[$n, $r, (.throughput|floor), .latency.p50, .latency.p90, .latency.p99, .latency.p999, .errors, (.decisions|to_entries|map("\(.key)=\(.value)")|join(" "))] | @tsv' \
				"$OUT/$name.r$round.json" |
				awk -F'\t' '{printf "%-30s %5s %12s %9.3f %9.3f %9.3f %9.3f %7s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
		done
	done
	echo
	echo "ratios per round (Chaperone / OPA throughput; OPA / Chaperone p99: > 1 means Chaperone is better)"
	for round in $(seq "$ROUNDS"); do
		for name in chaperone-json chaperone-connect; do
			jq -r -s --arg n "$name" --arg r "$round" \
				'"round \($r) \($n) vs opa-json: throughput \(.[0].throughput / .[1].throughput * 100 | floor / 100)x, p50 \(.[1].latency.p50 / .[0].latency.p50 * 100 | floor / 100)x, p99 \(.[1].latency.p99 / .[0].latency.p99 * 100 | floor / 100)x"' \
				"$OUT/$name.r$round.json" "$OUT/opa-json.r$round.json"
		done
	done
} | tee "$OUT/summary.txt"

# Both sides must have answered everything and decided alike (same mix).
status=0
for round in $(seq "$ROUNDS"); do
	for f in "$OUT"/*.r"$round".json; do
		if [[ $(jq .errors "$f") != 0 ]]; then
			echo "compare.sh: $(basename "$f"): errors" >&2
			status=1
		fi
	done
	mix='.decisions | ([.[]] | add) as $t | with_entries(.value = (.value * 100 / $t | round))'
	c=$(jq -c "$mix" "$OUT/chaperone-json.r$round.json")
	o=$(jq -c "$mix" "$OUT/opa-json.r$round.json")
	if [[ $c != "$o" ]]; then
		echo "compare.sh: round $round: decision mix differs: chaperone $c, opa $o" >&2
		status=1
	fi
done
echo "results in $OUT" >&2
exit $status
