#!/usr/bin/env bash
# redis-scale.sh: `chaperone consent import` of N consents into a local
# Redis Cluster (3 masters, 3 replicas) through a `chaperone serve`, and
# what it costs: import throughput, Redis memory per consent, serve's RSS
# before and after its cache holds 100k patients.
#
# Starts the cluster (redis-server + redis-cli --cluster create, on ports
# 17000-17005 and buses 27000-27005) and serve on 127.0.0.1:18790 in a
# temporary directory, writes N consents (one deny restriction per
# patient) as NDJSON, imports them (PutBatch, --batch B, --concurrency C),
# reads INFO memory
# of every master, then asks serve one Check per patient for the first
# min(N, 100000) patients and reads its RSS. Stops everything at exit.
#
# Environment: N (100000), B (500 consents per PutBatch), C (4 requests in flight), REDIS_TIMEOUT (2s: a loaded machine
# delays replica acknowledgements), SKIP_BUILD=1. Not run by CI.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-100000}
C=${C:-4}
B=${B:-500}
DIR=$(mktemp -d)
pids=()
cleanup() {
  status=$?
  [ $status = 0 ] || { echo "--- serve.log (tail)"; tail -20 "$DIR/serve.log"; } >&2
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

mkdir -p "$ROOT/bin"
[ -n "${SKIP_BUILD:-}" ] || go build -o "$ROOT/bin/chaperone" ./cmd/chaperone
CHAP=$ROOT/bin/chaperone

addrs=()
for i in 0 1 2 3 4 5; do
  port=$((17000 + i))
  mkdir -p "$DIR/n$i"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR/n$i" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --cluster-port $((27000 + i)) --cluster-require-full-coverage no --loglevel warning >"$DIR/n$i.log" 2>&1 &
  pids+=($!)
  addrs+=("127.0.0.1:$port")
done
for a in "${addrs[@]}"; do
  for _ in $(seq 100); do redis-cli -u "redis://$a" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log"
for _ in $(seq 300); do
  ok=1
  for a in "${addrs[@]}"; do
    redis-cli -u "redis://$a" cluster info | grep -q cluster_state:ok || ok=0
  done
  [ $ok = 1 ] && break
  sleep 0.1
done
masters() { for a in "${addrs[@]}"; do redis-cli -u "redis://$a" info replication | grep -q role:master && echo "$a"; done; }
used() { local s=0; for a in $(masters); do s=$((s + $(redis-cli -u "redis://$a" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'))); done; echo $s; }

url="redis+cluster://${addrs[0]}?addr=${addrs[1]}&addr=${addrs[2]}"
head -c 32 /dev/urandom | base64 >"$DIR/key"
XDG_CONFIG_HOME=$DIR "$CHAP" serve --addr 127.0.0.1:18790 --redis "$url" --encryption-key-file "$DIR/key" \
  --audit-file "$DIR/audit.jsonl" --cache-size 100000 --cache-ttl 1h --rate-limit 0 --redis-timeout ${REDIS_TIMEOUT:-2s} --log-level warn >"$DIR/serve.log" 2>&1 &
serve=$!
pids+=($serve)
for _ in $(seq 100); do curl -fs http://127.0.0.1:18790/readyz >/dev/null 2>&1 && break; sleep 0.1; done

python3 - "$N" >"$DIR/consents.ndjson" <<'EOF'
import json, sys
n = int(sys.argv[1])
for i in range(n):
    print(json.dumps({"resourceType": "Consent", "id": f"c{i}", "status": "active", "dateTime": "2020-01-01",
        "patient": {"reference": f"Patient/{i}"},
        "provision": {"type": "deny", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": "Organization/o1"}}]}}))
EOF

before=$(used)
rss0=$(awk '/VmRSS/ {print $2}' /proc/$serve/status)
echo "import $N consents, batches of $B, $C in flight (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
"$CHAP" consent import "$DIR/consents.ndjson" --to http://127.0.0.1:18790 --batch "$B" --concurrency "$C" --progress 0
after=$(used)
echo "redis used_memory on the masters: +$(( (after - before) / 1048576 )) MiB, $(( (after - before) / N )) bytes per consent (sealed; one copy, the replicas hold another)"
rss1=$(awk '/VmRSS/ {print $2}' /proc/$serve/status)

W=$(( N < 100000 ? N : 100000 ))
python3 - "$W" >"$DIR/checks.ndjson" <<'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"subject": {"kind": "practitioner", "id": "Practitioner/p1", "roles": ["clinician"], "organization": "Organization/o1"},
        "action": "read", "resource": {"type": "Observation", "id": "o1", "patient": f"Patient/{i}", "organization": "Organization/o1"},
        "purposeOfUse": "TREAT"}))
EOF
python3 - "$DIR/checks.ndjson" <<'EOF'
import json, sys, urllib.request, concurrent.futures
def check(line):
    req = urllib.request.Request("http://127.0.0.1:18790/chaperone.v1.DecisionService/Check", data=line.encode(),
        headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["decision"]
with open(sys.argv[1]) as f, concurrent.futures.ThreadPoolExecutor(16) as ex:
    got = {}
    for d in ex.map(check, f):
        got[d] = got.get(d, 0) + 1
print("warming checks:", got)
EOF
rss2=$(awk '/VmRSS/ {print $2}' /proc/$serve/status)
echo "serve RSS: $((rss0 / 1024)) MiB at start, $((rss1 / 1024)) MiB after the import, $((rss2 / 1024)) MiB with $W patients cached"
