#!/usr/bin/env python3
"""Fleet simulation for updater (issue 15, item 6): many machines, one git host.

N install roots, each with its own `--machine-id`, run the real `updater sync` against ONE
`git daemon` on 127.0.0.1 serving a repository with one module whose version carries
`metadata.rollout: {"percent": 25}`. Machines run a few at a time (--jobs). The script reports

- the rollout split (machines that applied the version vs deferred it), checked against the
  SHA-256 bucket each machine must have computed, and against 25 +/- 5 points;
- the git host's load: connections and upload-pack requests (counted from `git daemon
  --verbose`), bytes sent and received (counted by a byte-counting TCP relay in front of the
  daemon), per second of the phase;
- per-machine figures: the first sync (clone) and a no-op sync (nothing new): round trips
  (connections) and bytes.

Python 3 standard library only, plus git (with `git daemon`). See bench/README.md.

    bench/fleet_sim.py                     # 200 machines, 4 at a time
    bench/fleet_sim.py --smoke             # 20 machines, no split check (too few machines)
    UPDATER_BIN=target/debug/updater bench/fleet_sim.py --machines 400 --jobs 2

Exit status: 0 on success; 1 when a command failed or the split is outside 25 +/- 5 points
(or disagrees with the buckets); 2 on a usage error.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

MODULE = "web"
VERSION = "1.0.0"


def die(msg, code=1):
    print(f"fleet_sim: {msg}", file=sys.stderr)
    sys.exit(code)


def bucket(machine_id, module, version):
    """The same bucket as src/fleet.rs: SHA-256(id NUL module NUL version), first two bytes
    big-endian, mod 100."""
    d = hashlib.sha256(f"{machine_id}\0{module}\0{version}".encode()).digest()
    return int.from_bytes(d[:2], "big") % 100


def machine_id(i):
    """A distinct, /etc/machine-id-shaped id (32 lowercase hex digits) for machine i."""
    return hashlib.sha256(f"fleet-sim-machine-{i}".encode()).hexdigest()[:32]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Relay:
    """A TCP relay on 127.0.0.1 in front of the git daemon that counts the bytes each way.
    git daemon itself logs connections but not bytes."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.sent = 0  # host -> machines
        self.received = 0  # machines -> host
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return self.connections, self.sent, self.received

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, "received"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "sent"), daemon=True).start()

    def _pump(self, src, dst, field):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                with self.lock:
                    setattr(self, field, getattr(self, field) + len(data))
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def run(cmd, env, cwd=None, timeout=300):
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        die(f"{' '.join(cmd)} did not finish within {timeout} s")
    if p.returncode != 0:
        die(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')}")
    return p


def write_module(path, env, version, percent, payload_kib, message):
    """Writes module MODULE at `version` with `metadata.rollout.percent` and commits."""
    mod = os.path.join(path, "modules", MODULE)
    os.makedirs(mod, exist_ok=True)

    def write(rel, text, mode=0o644):
        p = os.path.join(path, rel)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    index = {"metadata": {"schema_version": version, "rollout": {"percent": percent}},
             "configuration": {}}
    write(f"modules/{MODULE}/index.json", json.dumps(index, indent=2) + "\n")
    write(f"modules/{MODULE}/update", "#!/bin/sh\nexit 0\n", 0o755)
    if payload_kib is not None:
        # Random hex: compresses to about half, like typical binary-ish module content.
        write(f"modules/{MODULE}/payload.bin", os.urandom(payload_kib * 512).hex())
    run(["git", "-C", path, "add", "-A"], env)
    run(["git", "-C", path, "commit", "-q", "-m", message], env)


def make_repo(path, env, percent, payload_kib):
    os.makedirs(path)
    run(["git", "-C", path, "-c", "init.defaultBranch=master", "init", "-q"], env)
    with open(os.path.join(path, "index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"schema_version": "1.0.0", "channel": "stable"},
                            "packages": {}}, indent=2) + "\n")
    write_module(path, env, VERSION, percent, payload_kib, f"{MODULE} {VERSION} at {percent}%")


def count_log(path):
    with open(path, errors="replace") as f:
        text = f.read()
    return (len(re.findall(r"Connection from", text)),
            len(re.findall(r"Request upload-pack", text)))


def host_cpu(pid):
    """CPU seconds of the git daemon plus its reaped upload-pack children (/proc/PID/stat
    utime, stime, cutime, cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def phase(name, machines, sync_one, jobs, relay, daemon_log, daemon_pid):
    cpu0 = host_cpu(daemon_pid)
    c0, s0, r0 = relay.snapshot()
    l0, u0 = count_log(daemon_log)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(sync_one, machines))
    dt = time.monotonic() - t0
    time.sleep(0.2)  # let the relay threads and the daemon's log catch up with the last exit
    c1, s1, r1 = relay.snapshot()
    l1, u1 = count_log(daemon_log)
    cpu = host_cpu(daemon_pid) - cpu0
    return {
        "cpu": cpu,
        "name": name, "machines": len(machines), "seconds": dt,
        "connections": c1 - c0, "daemon_connections": l1 - l0, "upload_packs": u1 - u0,
        "sent": s1 - s0, "received": r1 - r0, "results": results,
    }


def kib(n):
    return f"{n / 1024:.1f} KiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machines", type=int, default=200, help="simulated machines (default 200)")
    ap.add_argument("--jobs", type=int, default=4, help="machines syncing at once (default 4)")
    ap.add_argument("--percent", type=int, default=25, help="metadata.rollout.percent (default 25)")
    ap.add_argument("--tolerance", type=float, default=5.0,
                    help="allowed distance of the split from --percent, in points (default 5)")
    ap.add_argument("--payload-kib", type=int, default=64,
                    help="size of the module's data file (default 64 KiB)")
    ap.add_argument("--smoke", action="store_true",
                    help="20 machines; the split is printed but not checked (too few machines)")
    ap.add_argument("--bin", default=os.environ.get("UPDATER_BIN"),
                    help="updater binary (default $UPDATER_BIN, else a fresh release build)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args()
    if a.smoke:
        a.machines = 20
    if a.machines < 1 or a.jobs < 1 or not 0 <= a.percent <= 100 or a.payload_kib < 0:
        die("--machines and --jobs must be positive, --percent 0..100", 2)
    if shutil.which("git") is None:
        die("git is not on PATH", 2)

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not a.bin:
        print("fleet_sim: building the release binary (cargo build --release)", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=top, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(top, "target"))
        a.bin = os.path.join(top, target, "release", "updater")
    if not (os.path.isfile(a.bin) and os.access(a.bin, os.X_OK)):
        die(f"{a.bin} is not an executable", 2)

    work = tempfile.mkdtemp(prefix="updater-fleet-sim.", dir=os.environ.get("TMPDIR", "/tmp"))
    daemon = None
    try:
        binary = os.path.join(work, "updater")
        shutil.copy2(a.bin, binary)  # frozen copy: a concurrent build cannot swap it
        gitconfig = os.path.join(work, "gitconfig")
        open(gitconfig, "w").close()
        env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=gitconfig,
                   GIT_AUTHOR_NAME="sim", GIT_AUTHOR_EMAIL="sim@example.invalid",
                   GIT_COMMITTER_NAME="sim", GIT_COMMITTER_EMAIL="sim@example.invalid",
                   HOME=work)
        env.pop("RUST_LOG", None)
        srv = os.path.join(work, "srv")
        make_repo(os.path.join(srv, "updates"), env, a.percent, a.payload_kib)

        port = free_port()
        daemon_log = os.path.join(work, "git-daemon.log")
        git_daemon = os.path.join(run(["git", "--exec-path"], env).stdout.decode().strip(),
                                  "git-daemon")
        with open(daemon_log, "w") as log:
            daemon = subprocess.Popen(
                [git_daemon, "--verbose", "--reuseaddr", f"--base-path={srv}", "--export-all",
                 "--listen=127.0.0.1", f"--port={port}"],
                stdout=log, stderr=log, env=env)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            die("git daemon did not start listening")
        time.sleep(0.3)  # so the probe's own "Connection from" line is logged before phase 1
        relay = Relay(port)
        url = f"git://127.0.0.1:{relay.port}/updates"

        ids = [machine_id(i) for i in range(a.machines)]
        if len(set(ids)) != len(ids):
            die("machine ids collide")

        def sync_one(i):
            root = os.path.join(work, "machines", f"m{i:05d}")
            os.makedirs(root, exist_ok=True)
            p = run([binary, "--modules-path", root, "--repo-url", url, "sync", "--json",
                     "--machine-id", ids[i]], env, cwd=work)
            try:
                doc = json.loads(p.stdout)
                row = next(m for m in doc["modules"] if m["name"] == MODULE)
            except (ValueError, KeyError, StopIteration) as e:
                die(f"machine {i}: no row for {MODULE} in the --json document ({e}):\n"
                    f"{p.stdout.decode(errors='replace')}")
            return row["decision"], row.get("bucket")

        machines = list(range(a.machines))
        repo = os.path.join(srv, "updates")
        raised = min(100, 2 * a.percent)
        new_version = "1.1.0"
        # (phase, what is committed before it, the version and percent every machine sees)
        plan = [
            ("first sync (clone)", None, VERSION, a.percent),
            ("no-op sync", None, VERSION, a.percent),
            (f"rollout raised to {raised} %", lambda: write_module(
                repo, env, VERSION, raised, None, f"{MODULE} {VERSION}: rollout {raised}%"),
             VERSION, raised),
            (f"new version {new_version} at {a.percent} %", lambda: write_module(
                repo, env, new_version, a.percent, a.payload_kib,
                f"{MODULE} {new_version} at {a.percent}%"),
             new_version, a.percent),
        ]
        phases = []
        wrong = []
        for name, commit, version, percent in plan:
            if commit is not None:
                commit()
            ph = phase(name, machines, sync_one, a.jobs, relay, daemon_log, daemon.pid)
            ph["version"], ph["percent"] = version, percent
            # Each machine's decision against the bucket it must have computed.
            ph["applied"] = 0
            ph["on"] = set()
            for i, (decision, b) in enumerate(ph["results"]):
                expect = bucket(ids[i], MODULE, version)
                if decision == "deferred":
                    if expect < percent or b != expect:
                        wrong.append((name, i, decision, b, expect))
                elif expect >= percent or decision in ("invalid", "not_targeted"):
                    wrong.append((name, i, decision, b, expect))
                else:
                    ph["applied"] += 1
                    ph["on"].add(i)
            phases.append(ph)
        first = phases[0]
        only_added = first["on"] <= phases[1]["on"] <= phases[2]["on"]
        if not only_added:
            wrong.append(("raising the percent removed machines", sorted(first["on"] - phases[2]["on"])))
        applied = first["applied"]
        share = 100.0 * applied / a.machines

        print(f"# Fleet simulation: {a.machines} machines, {a.jobs} at a time, one git daemon "
              f"on 127.0.0.1; module {MODULE} {VERSION} at rollout {a.percent}%")
        print()
        print(f"Split: **{applied} applied ({share:.1f} %), {a.machines - applied} deferred** "
              f"(target {a.percent} ± {a.tolerance:g} points)")
        print()
        print("| phase | machines | on the new version | wall s | connections | upload-pack "
              "requests | requests/s | bytes sent by host | bytes received | per machine: "
              "round trips | per machine: sent | per machine: received | host CPU per connection |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for ph in phases:
            n = ph["machines"]
            print(f"| {ph['name']} | {n} | {ph['applied']} ({100.0 * ph['applied'] / n:.1f} %) | "
                  f"{ph['seconds']:.1f} | {ph['daemon_connections']} | "
                  f"{ph['upload_packs']} | {ph['daemon_connections'] / ph['seconds']:.1f} | "
                  f"{kib(ph['sent'])} | {kib(ph['received'])} | "
                  f"{ph['daemon_connections'] / n:.2f} | {ph['sent'] / n:.0f} B | "
                  f"{ph['received'] / n:.0f} B | "
                  f"{1000 * ph['cpu'] / max(ph['daemon_connections'], 1):.1f} ms |")
        print()
        print("Connections counted by the byte-counting relay: "
              + ", ".join(str(ph["connections"]) for ph in phases)
              + f" (the daemon's log: "
              + ", ".join(str(ph["daemon_connections"]) for ph in phases)
              + f"). Requests/s is the rate of this run ({a.jobs} machines at a time on this "
              f"host), not a limit of the daemon. Host CPU: git daemon and the upload-pack processes it forked "
              f"and reaped (/proc utime+stime+cutime+cstime), {os.sysconf('SC_CLK_TCK')} ticks/s. Module payload: {a.payload_kib} KiB of hex "
              f"text ({a.payload_kib // 2} KiB of entropy). Raising the percent only ever "
              f"added machines (every machine on {VERSION} at {a.percent} % still on it at "
              f"{raised} %): {'yes' if only_added else 'NO'}.")
        failed = False
        if wrong:
            print(f"\n{len(wrong)} machine decision(s) against their bucket: {wrong[:10]}")
            failed = True
        if not a.smoke and abs(share - a.percent) > a.tolerance:
            print(f"\nsplit {share:.1f} % is outside {a.percent} ± {a.tolerance:g}")
            failed = True
        return 1 if failed else 0
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        if a.keep:
            print(f"fleet_sim: scratch directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
