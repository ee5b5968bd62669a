#!/usr/bin/env bash
# doors.sh: the four doors of one `chaperone serve --gateway` (Connect JSON
# Check, AuthZEN, Envoy ext_authz and forward-auth) asked the same
# request-phase requests (the built-in scenario gateway), interleaved in
# rounds, with the server's CPU per answered request (chaperone bench
# --server-pid: its utime+stime over each run divided by the requests
# answered).
#
# Environment: DURATION (10s), WARMUP (2s, a discarded run before the
# rounds), CONCURRENCY (4), ROUNDS (3), DISTINCT_IDS=1, PROTOCOLS ("json
# authzen ext-authz forward"), SKIP_BUILD=1, PORT (18790; a second server
# the next port, and so on), SERVE_ARGS (added to chaperone serve),
# CONNECTIONS (ext-authz: HTTP/2 connections the workers share; unset:
# one per worker), SERVERS ("bin/chaperone": the binaries to serve; with several, e.g. a
# build of an older commit and bin/chaperone, each round asks each of
# them in turn, an A/B in one run), RATE (unset: closed loop; set: every
# door asked at RATE requests/s, open loop, so each server is compared at
# the same load whatever its generator's own cost). The generator is
# always bin/chaperone.
# Prints one line per run and the ratio of each door to Connect JSON on
# the same server in the same round.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-4}
ROUNDS=${ROUNDS:-3}
PROTOCOLS=${PROTOCOLS:-json authzen ext-authz forward}
SERVERS=${SERVERS:-bin/chaperone}
PORT=${PORT:-18790}
TMP=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
	mkdir -p bin
	go build -o bin/chaperone ./cmd/chaperone
fi
bin/chaperone bench --write-gateway "$TMP/gw" >/dev/null
addrs=()
i=0
for bin in $SERVERS; do
	addr=127.0.0.1:$((PORT + i))
	# shellcheck disable=SC2086
	"$bin" serve --addr "$addr" --gateway "$TMP/gw/gateway.yaml" --audit-file "$TMP/audit-$i.jsonl" ${SERVE_ARGS:-} 2>"$TMP/serve-$i.log" &
	pids+=($!)
	addrs+=("$addr")
	i=$((i + 1))
done
for addr in "${addrs[@]}"; do
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://$addr/healthz" 2>/dev/null && break
		sleep 0.1
	done
done

bench() { # ADDR PROTOCOL DURATION [--server-pid PID]
	bin/chaperone bench --addr "$1" --scenario gateway --protocol "$2" --duration "$3" "${@:4}" \
		--concurrency "$CONCURRENCY" --quiet --format json ${RATE:+--rate "$RATE"} ${DISTINCT_IDS:+--distinct-ids} ${CONNECTIONS:+--connections "$CONNECTIONS"} \
		--gateway "$TMP/gw/gateway.yaml" --gateway-key "$TMP/gw/end-user-key.json"
}

for addr in "${addrs[@]}"; do
	for p in $PROTOCOLS; do bench "$addr" "$p" "$WARMUP" >/dev/null; done
done
echo "# doors.sh $(date -u +%FT%TZ): $(nproc) CPUs, $DURATION per run, concurrency $CONCURRENCY, ${CONNECTIONS:+ext-authz over $CONNECTIONS connections, }${RATE:+open loop at $RATE/s, }${DISTINCT_IDS:+distinct resource ids, }load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-22s %-10s %10s %14s %7s %s\n' round server protocol checks/s server-µs/req ratio decisions
for r in $(seq "$ROUNDS"); do
	for i in "${!addrs[@]}"; do
		base=
		for p in $PROTOCOLS; do
			out=$(bench "${addrs[$i]}" "$p" "$DURATION" --server-pid "${pids[$i]}")
			read -r us errs tput dec < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("%.1f" % r["serverCpuMicrosPerRequest"], r["errors"], round(r["throughput"]), ",".join(f"{k}:{v}" for k, v in sorted(r["decisions"].items())))' "$out")
			[[ -z $base ]] && base=$us
			ratio=$(awk -v a="$us" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
			bin=($SERVERS)
			printf '%-6s %-22s %-10s %10s %14s %7s %s%s\n' "$r" "${bin[$i]}" "$p" "$tput" "$us" "$ratio" "$dec" "$([[ $errs != 0 ]] && echo " ERRORS $errs")"
		done
	done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
