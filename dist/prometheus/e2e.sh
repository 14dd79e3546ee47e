#!/usr/bin/env bash
# End-to-end fleet view on Prometheus (issue 15, item 5), on loopback only.
#
# Several install roots ("machines", each with its own --machine-id) sync from one `git daemon`
# serving a repository whose module `web` carries metadata.rollout {"percent": 50}. Each writes
# --metrics-file into its own node_exporter textfile directory; one node_exporter per machine
# serves it, and one Prometheus scrapes them all (and loads updater.rules.yml). The script then
# asks Prometheus's HTTP API for each machine's module versions and the rollout split and checks
# them against the bucket formula (SHA-256 of machine-id NUL module NUL version, first two bytes
# big-endian, mod 100). It also runs `promtool check rules` and `promtool test rules`.
#
# Installs nothing: needs prometheus, promtool, prometheus-node-exporter (Debian packages), git,
# python3, and the updater binary ($UPDATER, else target/debug/updater, built if missing).
# Every process it starts is killed on exit; its temp directory is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
machines=${E2E_MACHINES:-6}
percent=50

for tool in prometheus promtool prometheus-node-exporter git python3; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool not found (apt-get install prometheus prometheus-node-exporter)" >&2; exit 2; }
done
if [ -n "${UPDATER:-}" ]; then
    updater=$UPDATER
    [ -x "$updater" ] || { echo "e2e: UPDATER=$updater is not an executable file" >&2; exit 2; }
else
    updater=$top/target/debug/updater
    [ -x "$updater" ] || (cd "$top" && cargo build -q)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/updater-prom-e2e.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== promtool check rules"
promtool check rules "$here/updater.rules.yml"
echo "== promtool test rules"
(cd "$here" && promtool test rules updater.rules.test.yml)

# A free loopback port (the kernel picks it; the tiny race with other programs is acceptable here).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits until "$@" succeeds (up to about 30 s), else fails naming what it waited for.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "e2e: timed out waiting for $what" >&2
    return 1
}

echo "== repository with a phased module (web 1.0.0 at ${percent} %)"
repo=$tmp/base/updates
mkdir -p "$repo/modules/base" "$repo/modules/web"
export GIT_CONFIG_NOSYSTEM=1 HOME=$tmp/home
mkdir -p "$HOME"
git -C "$repo" -c init.defaultBranch=master init -q
cat >"$repo/index.json" <<'JSON'
{
  "metadata": { "schema_version": "1.0.0", "channel": "stable" },
  "packages": {}
}
JSON
cat >"$repo/modules/base/index.json" <<'JSON'
{
  "metadata": { "schema_version": "1.0.0" },
  "configuration": {}
}
JSON
cat >"$repo/modules/web/index.json" <<JSON
{
  "metadata": { "schema_version": "1.0.0", "rollout": { "percent": ${percent} } },
  "configuration": {}
}
JSON
for m in base web; do
    printf '#!/bin/sh\necho "%s updated"\n' "$m" >"$repo/modules/$m/update"
    chmod 755 "$repo/modules/$m/update"
done
git -C "$repo" add -A
git -C "$repo" -c user.name=e2e -c user.email=e2e@localhost commit -qm "base 1.0.0, web 1.0.0 phased at ${percent} %"

gport=$(free_port)
git daemon --reuseaddr --base-path="$tmp/base" --export-all --listen=127.0.0.1 --port="$gport" "$tmp/base" \
    >"$tmp/git-daemon.log" 2>&1 &
pids+=($!)
url=git://127.0.0.1:$gport/updates
wait_for "git daemon on port $gport" git ls-remote "$url"

echo "== $machines machines sync from $url"
scrape=""
for i in $(seq 0 $((machines - 1))); do
    id=$(printf 'e2e%029d' "$i")
    m=$tmp/machine$i
    mkdir -p "$m/root" "$m/textfile"
    "$updater" sync --repo-url "$url" --modules-path "$m/root" --machine-id "$id" \
        --metrics-file "$m/textfile/updater.prom" >"$m/sync.log" 2>&1 || {
        echo "e2e: sync of machine $id failed:" >&2
        cat "$m/sync.log" >&2
        exit 1
    }
    port=$(free_port)
    prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --collector.disable-defaults \
        --collector.textfile --collector.textfile.directory="$m/textfile" >"$m/node-exporter.log" 2>&1 &
    pids+=($!)
    echo "$id" >"$m/id"
    scrape+="      - targets: ['127.0.0.1:$port']
        labels: { machine: '$id' }
"
done

pport=$(free_port)
cat >"$tmp/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $here/updater.rules.yml
scrape_configs:
  - job_name: updater
    static_configs:
$scrape
YAML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

echo "== querying Prometheus on 127.0.0.1:$pport"
show_logs() {
    echo "e2e: prometheus log (tail):" >&2
    tail -n 20 "$tmp/prometheus.log" >&2 || true
    echo "e2e: node_exporter log of machine0 (tail):" >&2
    tail -n 20 "$tmp/machine0/node-exporter.log" >&2 || true
}
python3 - "$pport" "$machines" "$percent" <<'PY' || { show_logs; exit 1; }
import hashlib, json, sys, time, urllib.parse, urllib.request

port, machines, percent = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ids = ["e2e%029d" % i for i in range(machines)]

def query(q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise SystemExit("e2e: query %r failed: %r" % (q, doc))
    return doc["data"]["result"]

def bucket(machine, module, version):
    h = hashlib.sha256(b"\0".join(x.encode() for x in (machine, module, version))).digest()
    return int.from_bytes(h[:2], "big") % 100

# Wait (up to 60 s) until every machine's node_exporter is scraped with updater's series in it.
deadline = time.time() + 60
while True:
    try:
        got = query('count(updater_last_run_success{job="updater",command="sync"} == 1)')
        if got and int(float(got[0]["value"][1])) == machines:
            break
    except OSError:
        pass
    if time.time() > deadline:
        raise SystemExit("e2e: Prometheus did not scrape %d machines with a successful sync in 60 s" % machines)
    time.sleep(0.5)

versions = {}
for s in query('updater_module_info{job="updater"}'):
    versions.setdefault(s["metric"]["machine"], {})[s["metric"]["module"]] = s["metric"]["version"]
deferred = {s["metric"]["machine"]: int(float(s["value"][1]))
            for s in query('updater_deferred_modules{job="updater"}')}

failures = []
print("%-34s %-6s %-8s %s" % ("machine", "bucket", "web", "installed modules (from Prometheus)"))
for mid in ids:
    b = bucket(mid, "web", "1.0.0")
    inside = b < percent
    have = versions.get(mid, {})
    print("%-34s %-6d %-8s %s" % (mid, b, "applied" if inside else "deferred",
          ", ".join("%s %s" % kv for kv in sorted(have.items()))))
    want = {"base": "1.0.0"}
    if inside:
        want["web"] = "1.0.0"
    if have != want:
        failures.append("%s: modules %r, expected %r" % (mid, have, want))
    if deferred.get(mid) != (0 if inside else 1):
        failures.append("%s: updater_deferred_modules %r, expected %d" % (mid, deferred.get(mid), 0 if inside else 1))

applied = int(float(query('count(updater_module_info{job="updater",module="web",version="1.0.0"})')[0]["value"][1]))
held_back = query('count(updater_deferred_modules{job="updater"} > 0)')
held_back = int(float(held_back[0]["value"][1])) if held_back else 0
expected_applied = sum(bucket(m, "web", "1.0.0") < percent for m in ids)
print("rollout split for web 1.0.0 at %d %%: %d applied, %d deferred (of %d machines)"
      % (percent, applied, held_back, machines))
if (applied, held_back) != (expected_applied, machines - expected_applied):
    failures.append("split %d/%d, expected %d/%d" % (applied, held_back, expected_applied, machines - expected_applied))
if expected_applied in (0, machines):
    failures.append("the machine ids fall on one side only; the split shows nothing")

groups = json.load(urllib.request.urlopen("http://127.0.0.1:%d/api/v1/rules" % port, timeout=5))["data"]["groups"]
alerts = sorted(r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting")
print("alert rules loaded:", ", ".join(alerts))
if "UpdaterRolloutStuck" not in alerts:
    failures.append("updater.rules.yml not loaded: %r" % alerts)

if failures:
    raise SystemExit("e2e: FAILED\n  " + "\n  ".join(failures))
print("e2e: OK")
PY
