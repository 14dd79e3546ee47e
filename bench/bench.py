#!/usr/bin/env python3
"""Benchmark harness for `updater` (python3 standard library only).

Run it through bench/run.sh, which builds the binary, makes the scratch directory and starts a
real `git daemon` on 127.0.0.1 (killed by a trap at exit). Every figure is printed beside its
floor, measured in the same run, as a ratio: each measurement is repeated --reps times, the
median is reported.

Scenarios (numbers as in the table):
  1  no-op `updater check` (clone already synced, nothing changed upstream) vs `git fetch` on the
     same clone, over a plain path URL and over git://; whether any objects were transferred.
  2  `updater sync` applying 100 updates out of 1,000 modules with executable `update` entries
     vs one `cp -r` of the same 100 directories plus a shell loop running each entry.
  3  the same with Python `main(args)` entries: cost per module above (2), with and without
     UPDATER_NO_FORKSERVER=1.
  4  first clone of a 500-commit history: shallow (updater over git://) vs full `git clone`, on-disk
     .git bytes vs the tip tree's size; then a fetch of 5 new commits transfers only new objects.
  5  peak RSS (ru_maxrss from wait4) of the no-op `updater check` over the largest size vs
     `git fetch`'s.
  6  (issue 13, target 5b) peak RSS of a first clone of a ~60 MB repository (`updater check
     --repo-url git://...` on an empty root) vs `git clone --depth 1`'s and a full `git clone`'s.
  8  the Python apply of (3) vs the in-process Python floor (bench/py_floor.py: shutil.copytree
     of the 100 directories, then each imported and its `main` called in one interpreter).
  9  a `sync --run enabled` where nothing changed, 20 Python modules whose `main` returns at
     once, vs the in-process floor calling the same 20 mains (bench/py_floor.py call).

Exit status: 1 when any command (updater, git, a floor) fails; missed targets never fail the run.
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time

# Issue 13, target 3: the no-op check over a plain path at most as long as `git fetch`, over
# git:// at most half as long.
TARGET_NOOP_RATIO = {"path": 1.0, "git://": 0.5}
TARGET_APPLY_RATIO = 1.5
TARGET_PY_MS_PER_MODULE = 5.0
TARGET_SHALLOW_RATIO = 1.3
TARGET_RSS_MIB = 20.0
TARGET_CLONE_RSS_MIB = 40.0
TARGET_PY_FLOOR_RATIO = 1.0
TARGET_RUN_ENABLED_RATIO = 1.0
RUN_ENABLED_MODULES = 20
PY_FLOOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py_floor.py")

COMMITTER = "Bench <bench@example.invalid>"
UPDATE_SH = b"#!/bin/sh\n:\n"
INDEX_PY = b"def main(args):\n    return True\n"


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class CommandFailed(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running commands: wall time from just before the spawn to the reap, peak RSS from wait4.


class Result:
    def __init__(self, argv, status, ms, maxrss_kib, output):
        self.argv = argv
        self.status = status
        self.ms = ms
        self.maxrss_kib = maxrss_kib
        self.output = output


class Runner:
    def __init__(self, work, env):
        self.work = work
        self.env = env
        self.out_path = os.path.join(work, "last-command.out")
        self.failures = []

    def run(self, argv, cwd=None, env_extra=None, ok=(0,), what=None):
        """Runs argv with stdout+stderr to a file; returns a Result. Raises CommandFailed when the
        exit status is not in `ok`."""
        env = dict(self.env)
        if env_extra:
            env.update(env_extra)
        with open(self.out_path, "wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
            _, wstatus, rusage = os.wait4(proc.pid, 0)
            t1 = time.perf_counter()
        proc.returncode = os.waitstatus_to_exitcode(wstatus)
        with open(self.out_path, "rb") as f:
            output = f.read().decode("utf-8", "replace")
        res = Result(argv, proc.returncode, (t1 - t0) * 1000.0, rusage.ru_maxrss, output)
        if res.status not in ok:
            shown = " ".join(argv) if len(" ".join(argv)) < 400 else " ".join(argv)[:400] + " …"
            tail = "\n".join(output.splitlines()[-25:])
            msg = f"{what or 'command'} failed (exit {res.status}): {shown}\n{tail}"
            self.failures.append(msg)
            raise CommandFailed(msg)
        return res

    def maxrss_kib(self, argv, what=None):
        """Peak RSS of argv in KiB. wait4's ru_maxrss of a child spawned from this (large) Python
        process starts at Python's own RSS (Linux carries the pre-exec high-water mark over), so
        the command is spawned by GNU time (small) and its wait4 figure read back. Without GNU
        time, falls back to wait4 here, which is floored at this process's RSS."""
        if GNU_TIME:
            rss_file = os.path.join(self.work, "rss.out")
            self.run([GNU_TIME, "-o", rss_file, "-f", "%M", *argv], what=what)
            with open(rss_file) as f:
                return int(f.read().split()[-1])
        return self.run(argv, what=what).maxrss_kib

    def out(self, argv, cwd=None, stdin_bytes=None):
        """Runs a helper command and returns its stdout (bytes); raises on failure."""
        p = subprocess.run(argv, cwd=cwd, env=self.env, input=stdin_bytes,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            msg = f"command failed (exit {p.returncode}): {' '.join(argv)}\n" + \
                p.stderr.decode("utf-8", "replace")[-2000:]
            self.failures.append(msg)
            raise CommandFailed(msg)
        return p.stdout


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------------------
# Generating updates repositories with `git fast-import` (fast even for 10,000 modules).


def mod_name(i):
    return f"m{i:05d}"


def data_blob(rng, size):
    # Printable but incompressible-ish content, so history and deltas cost what real data costs.
    return rng.randbytes(size * 3 // 4).hex().encode()[:size] + b"\n"


def index_json(name, version):
    return (
        "{\n"
        '  "metadata": {\n'
        f'    "schema_version": "{version}",\n'
        f'    "description": "benchmark module {name}"\n'
        "  },\n"
        '  "configuration": {\n'
        f'    "name": "{name}"\n'
        "  }\n"
        "}\n"
    ).encode()


GLOBAL_INDEX = b'{\n  "metadata": { "schema_version": "1.0.0", "channel": "stable" },\n  "packages": {}\n}\n'


class FastImport:
    """Builds a stream for `git fast-import`."""

    def __init__(self):
        self.parts = []
        self.when = 1_700_000_000

    def commit(self, msg, files, first=False, parent_ref=None):
        """files: list of (path, mode, bytes); mode '100644' or '100755'."""
        self.when += 60
        m = msg.encode()
        p = self.parts
        p.append(b"commit refs/heads/master\n")
        p.append(f"committer {COMMITTER} {self.when} +0000\n".encode())
        p.append(b"data %d\n%s\n" % (len(m), m))
        if parent_ref:
            p.append(f"from {parent_ref}\n".encode())
        for path, mode, content in files:
            p.append(f"M {mode} inline {path}\n".encode())
            p.append(b"data %d\n" % len(content))
            p.append(content)
            p.append(b"\n")
        p.append(b"\n")

    def bytes(self):
        return b"".join(self.parts)


def module_files(i, kind, version, rng, data_size):
    name = mod_name(i)
    base = f"modules/{name}"
    files = [(f"{base}/index.json", "100644", index_json(name, version)),
             (f"{base}/data.txt", "100644", data_blob(rng, data_size))]
    if kind == "exec":
        files.append((f"{base}/update", "100755", UPDATE_SH))
    elif kind == "py":
        files.append((f"{base}/index.py", "100644", INDEX_PY))
    return files


def make_upstream(runner, path, n, kind, history, seed, data_size=256, changed_per_commit=None):
    """A bare repository with n modules; `history` commits: the first adds every module at
    1.0.0, each later one changes the data (and bumps the patch version) of a rotating slice."""
    rng = random.Random(seed)
    runner.out(["git", "init", "-q", "--bare", "-b", "master", path])
    fi = FastImport()
    files = [("index.json", "100644", GLOBAL_INDEX)]
    for i in range(n):
        files += module_files(i, kind, "1.0.0", rng, data_size)
    fi.commit("initial: %d modules" % n, files)
    per = changed_per_commit or max(1, n // 10)
    cursor = 0
    for c in range(1, history):
        files = []
        for _ in range(per):
            i = cursor % n
            cursor += 1
            files.append((f"modules/{mod_name(i)}/index.json", "100644",
                          index_json(mod_name(i), f"1.0.{c}")))
            files.append((f"modules/{mod_name(i)}/data.txt", "100644", data_blob(rng, data_size)))
        fi.commit(f"change {per} modules ({c})", files)
    runner.out(["git", "-C", path, "fast-import", "--quiet"], stdin_bytes=fi.bytes())
    return cursor


def add_commits(runner, path, commits, seed):
    """Appends commits to the bare repository at `path`. commits: list of (msg, files)."""
    fi = FastImport()
    fi.when += 10_000_000 + seed
    for k, (msg, files) in enumerate(commits):
        fi.commit(msg, files, parent_ref="refs/heads/master^0" if k == 0 else None)
    runner.out(["git", "-C", path, "fast-import", "--quiet"], stdin_bytes=fi.bytes())


def bump_modules(runner, path, indices, kind, version, seed, data_size=256):
    rng = random.Random(seed)
    files = []
    for i in indices:
        files += module_files(i, kind, version, rng, data_size)
    add_commits(runner, path, [(f"bump {len(indices)} modules to {version}", files)], seed)


# ---------------------------------------------------------------------------------------------
# Disk usage helpers.


def tree_bytes(path):
    """(apparent bytes, allocated bytes, files) of everything under path (no symlink follow)."""
    apparent = allocated = files = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for fn in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, fn))
            except FileNotFoundError:
                continue
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files += 1
    return apparent, allocated, files


def objects_snapshot(git_dir):
    """What the object store holds: pack files (name → size) and loose object count."""
    packs = {}
    pack_dir = os.path.join(git_dir, "objects", "pack")
    if os.path.isdir(pack_dir):
        for fn in os.listdir(pack_dir):
            packs[fn] = os.path.getsize(os.path.join(pack_dir, fn))
    loose = 0
    objdir = os.path.join(git_dir, "objects")
    for d in os.listdir(objdir) if os.path.isdir(objdir) else []:
        if len(d) == 2:
            loose += len(os.listdir(os.path.join(objdir, d)))
    return packs, loose


def snapshot_delta(a, b):
    """Human text of what changed between two objects_snapshot()s; '' when nothing."""
    new_packs = [p for p in b[0] if p not in a[0] and p.endswith(".pack")]
    parts = []
    if new_packs:
        parts.append(f"{len(new_packs)} new pack(s), {sum(b[0][p] for p in new_packs)} B")
    if b[1] != a[1]:
        parts.append(f"loose objects {a[1]}→{b[1]}")
    return ", ".join(parts)


def filesystem_of(path):
    """'<fstype> (<device>)' of the mount holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, fstype, dev)
    except OSError:
        pass
    return f"{best[1]} ({best[2]})"


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return f"{kib / 1048576:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        return "RAM ?"


def fmt_ms(ms):
    if ms != ms:  # nan
        return "n/a"
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def fmt_bytes(b):
    if b >= 10 * 1024 * 1024:
        return f"{b / 1048576:.1f} MiB"
    if b >= 10 * 1024:
        return f"{b / 1024:.0f} KiB"
    return f"{b} B"


def fmt_ratio(r):
    return "n/a" if r != r else f"{r:.2f}×"


def verdict(ok):
    return "✅ met" if ok else "❌ missed"


# ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        env = dict(os.environ)
        # Hermetic git: no system/user config (credential helpers, hooks, gc settings).
        self.gitconfig = os.path.join(self.work, "gitconfig")
        with open(self.gitconfig, "w") as f:
            f.write("[user]\n\tname = Bench\n\temail = bench@example.invalid\n"
                    "[init]\n\tdefaultBranch = master\n[advice]\n\tdetachedHead = false\n")
        env.update({
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": self.gitconfig,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
        })
        env.pop("UPDATER_NO_FORKSERVER", None)
        # A pyenv shim costs tens of ms per start; entries get the real interpreter.
        self.python = os.path.realpath(sys.executable)
        env["UPDATER_PYTHON"] = self.python
        self.env = env
        self.runner = Runner(self.work, env)
        self.bin = args.bin
        self.port = args.git_port
        self.srv = os.path.join(self.work, "srv")
        self.setup = args.setup
        self.rows = []  # (scenario, what, n, measured, floor, ratio, target, verdict, notes)
        self.notes = []
        self.jobs = str(os.cpu_count() or 1)

    # -- helpers ------------------------------------------------------------------------------

    def path_url(self, name):
        return os.path.join(self.srv, name)

    def git_url(self, name):
        return f"git://127.0.0.1:{self.port}/{name}"

    def updater(self, *argv, env_extra=None, what="updater"):
        return self.runner.run([self.bin, *argv], env_extra=env_extra, what=what)

    def git(self, *argv, what="git"):
        return self.runner.run(["git", *argv], what=what)

    def row(self, scenario, what, n, measured, floor, ratio, target, ok, notes=""):
        self.rows.append((scenario, what, n, measured, floor, ratio, target,
                          "" if ok is None else verdict(ok), notes))

    def wait_for_daemon(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise CommandFailed(f"git daemon did not start listening on 127.0.0.1:{self.port}")

    def fresh_dir(self, path):
        if os.path.lexists(path):
            shutil.rmtree(path)
        return path

    def copy_tree(self, src, dst):
        self.fresh_dir(dst)
        self.runner.out(["cp", "-a", src, dst])

    def copy_root(self, src, dst):
        """Copies an install root, then refreshes its clone's index stat cache. A copy has new
        inode numbers and ctimes, and updater never refreshes the cache (its hard reset keeps
        the old stat data, its status walk does not write the index), so without this every
        later run would re-hash every file of the clone, which a root installed in place never
        does. (That pathology is real for a restored backup: see bench/README.md.)"""
        self.copy_tree(src, dst)
        clone = os.path.join(dst, ".updater", "repo")
        if os.path.isdir(os.path.join(clone, ".git")):
            self.runner.out(["git", "-C", clone, "update-index", "-q", "--refresh"])

    # -- scenario 1 and 5 ---------------------------------------------------------------------

    def synced_root(self, url, name, n, kind, what):
        """An install root synced to `url` by a real `updater sync`, at <work>/<name>. The sync
        runs in the setup directory (tmpfs when there is one: each installed module costs a
        dozen fsyncs, which would make a 10,000-module setup take minutes) and the result is
        copied to the work directory, where every measurement runs."""
        setup = os.path.join(self.setup, name)
        self.fresh_dir(setup)
        t = time.time()
        self.updater("sync", "-q", "-j", self.jobs, "--repo-url", url, "--modules-path", setup,
                     what=f"initial updater sync ({what})")
        root = os.path.join(self.work, name)
        self.copy_root(setup, root)
        shutil.rmtree(setup)
        os.sync()
        log(f"initial sync of {what}: {time.time() - t:.1f}s")
        return root

    def scenario_noop(self, n, reps, rss_size):
        name = f"noop-{n}.git"
        up = self.path_url(name)
        t = time.time()
        make_upstream(self.runner, up, n, "exec", self.args.history_depth, seed=n)
        log(f"[1] upstream with {n} modules, {self.args.history_depth} commits: {time.time() - t:.1f}s")
        for transport, url in (("path", up), ("git://", self.git_url(name))):
            root = self.synced_root(url, f"noop-{n}-{transport.strip(':/')}", n, "exec",
                                    f"{n} modules over {transport}")
            clone = os.path.join(root, ".updater", "repo")
            git_dir = os.path.join(clone, ".git")
            check = ["check", "-q", "--modules-path", root]
            fetch = ["-C", clone, "fetch", "origin"]
            # updater never caches the stat data of a file changed in the last 3 s (an edit in
            # the same clock tick could go unseen), and the copy just made is that new: wait,
            # so the warm-up builds the index cache a machine's periodic check finds.
            time.sleep(4)
            # Warm-up, and attribution of any transfer to the tool that caused it.
            s0 = objects_snapshot(git_dir)
            self.updater(*check, what="updater check (no-op)")
            s1 = objects_snapshot(git_dir)
            self.git(*fetch, what="git fetch (no-op floor)")
            s2 = objects_snapshot(git_dir)
            ups, gits = [], []
            for _ in range(reps):
                ups.append(self.updater(*check, what="updater check (no-op)").ms)
                gits.append(self.git(*fetch, what="git fetch (no-op floor)").ms)
            s3 = objects_snapshot(git_dir)
            up_transfer = snapshot_delta(s0, s1)
            git_transfer = snapshot_delta(s1, s2)
            loop_transfer = snapshot_delta(s2, s3)
            transferred = up_transfer or loop_transfer
            packs = len([p for p in s3[0] if p.endswith(".pack")])
            note = ("objects transferred: "
                    + (f"YES ({transferred})" if transferred else "none")
                    + f" (objects/pack: {packs} pack(s) before and after, {s3[1]} loose)")
            if git_transfer:
                note += f"; git fetch: {git_transfer}"
            mu, mg = median(ups), median(gits)
            target = TARGET_NOOP_RATIO[transport]
            self.row(1, f"no-op `check` vs `git fetch`, {transport}", n, fmt_ms(mu), fmt_ms(mg),
                     mu / mg, f"≤ {target}×", mu / mg <= target and not transferred, note)
            if n == max(self.args.sizes) and transport == "path":
                # The same root restored from a copy (backup, new SD card): the clone's index
                # stat cache no longer matches, and nothing in updater refreshes it.
                copy = os.path.join(self.work, f"noop-{n}-copied")
                self.copy_tree(root, copy)
                os.sync()
                cc = ["check", "-q", "--modules-path", copy]
                self.updater(*cc, what="updater check (no-op, copied root)")
                cps = [self.updater(*cc, what="updater check (no-op, copied root)").ms
                       for _ in range(min(reps, 3))]
                mc = median(cps)
                self.row(1, "no-op `check` on a root restored with `cp -a` (stale index stat "
                            "cache, every run) vs `git fetch`", n, fmt_ms(mc), fmt_ms(mg), mc / mg,
                         f"≤ {target}×", mc / mg <= target,
                         f"{mc / mu:.1f}× the same check on a root installed in place")
                shutil.rmtree(copy)
            if n == rss_size:
                # Peak RSS barely varies between runs: a few repetitions are enough.
                rss_reps = min(reps, 3)
                ru = [self.runner.maxrss_kib([self.bin, *check], what="updater check (RSS)")
                      for _ in range(rss_reps)]
                rg = [self.runner.maxrss_kib(["git", *fetch], what="git fetch (RSS)")
                      for _ in range(rss_reps)]
                self.rss_rows.append((n, transport, median(ru) / 1024, median(rg) / 1024))

    # -- scenario 6 (issue 13, target 5b) -----------------------------------------------------

    def scenario_clone_rss(self, mib, reps):
        """Peak RSS of updater's first clone of a repository of about `mib` MiB of incompressible
        data (one commit, `mib` modules with 1 MiB of random bytes each) over git://, beside
        `git clone --depth 1` and a full `git clone` of the same URL."""
        n = max(1, mib)
        name = f"big-{mib}.git"
        up = self.path_url(name)
        t = time.time()
        # Random bytes (not the hex of data_blob): the pack is as large as the files.
        rng = random.Random(6)
        self.runner.out(["git", "init", "-q", "--bare", "-b", "master", up])
        fi = FastImport()
        files = [("index.json", "100644", GLOBAL_INDEX)]
        for i in range(n):
            base = f"modules/{mod_name(i)}"
            files += [(f"{base}/index.json", "100644", index_json(mod_name(i), "1.0.0")),
                      (f"{base}/data.bin", "100644", rng.randbytes(1 << 20)),
                      (f"{base}/update", "100755", UPDATE_SH)]
        fi.commit(f"initial: {n} modules of 1 MiB", files)
        self.runner.out(["git", "-C", up, "fast-import", "--quiet"], stdin_bytes=fi.bytes())
        self.runner.out(["git", "-C", up, "repack", "-adq"])
        pack = tree_bytes(os.path.join(up, "objects", "pack"))[0]
        log(f"[6] upstream with {n} modules of 1 MiB ({fmt_bytes(pack)} packed): {time.time() - t:.1f}s")
        url = self.git_url(name)
        ru, rd, rf = [], [], []
        for _ in range(reps):
            root = self.fresh_dir(os.path.join(self.work, "bigclone-updater"))
            ru.append(self.runner.maxrss_kib(
                [self.bin, "check", "-q", "--repo-url", url, "--modules-path", root],
                what="updater check (first clone of a big repository)"))
            d1 = self.fresh_dir(os.path.join(self.work, "bigclone-depth1"))
            rd.append(self.runner.maxrss_kib(["git", "clone", "-q", "--depth", "1", url, d1],
                                             what="git clone --depth 1 (RSS)"))
            full = self.fresh_dir(os.path.join(self.work, "bigclone-full"))
            rf.append(self.runner.maxrss_kib(["git", "clone", "-q", url, full],
                                             what="git clone (RSS)"))
        mu, md, mf = median(ru) / 1024, median(rd) / 1024, median(rf) / 1024
        self.row(6, "peak RSS of a first clone (updater `check` over git://) vs `git clone --depth 1`",
                 n, f"{mu:.1f} MiB", f"{md:.1f} MiB", mu / md, f"≤ {TARGET_CLONE_RSS_MIB:.0f} MiB",
                 mu <= TARGET_CLONE_RSS_MIB,
                 f"pack {fmt_bytes(pack)}; full `git clone`: {mf:.1f} MiB; "
                 + ("ru_maxrss from wait4, spawned by GNU time" if GNU_TIME else
                    "ru_maxrss from wait4 in the harness: floored at the harness's own RSS"))
        for d in ("bigclone-updater", "bigclone-depth1", "bigclone-full"):
            shutil.rmtree(os.path.join(self.work, d), ignore_errors=True)

    # -- scenarios 2 and 3 --------------------------------------------------------------------

    def prepare_apply(self, n, kind, bumped):
        """Upstream at v1, a root synced to it (saved), the upstream with `bumped` at 2.0.0
        (saved). Returns (upstream path, saved upstream, root path, saved root)."""
        name = f"apply-{kind}-{n}.git"
        up = self.path_url(name)
        make_upstream(self.runner, up, n, kind, 1, seed=7)
        root = self.synced_root(up, f"apply-{kind}-{n}", n, kind, f"{n} {kind} modules")
        bump_modules(self.runner, up, bumped, kind, "2.0.0", seed=8)
        saved_up = os.path.join(self.setup, f"apply-{kind}-{n}.git.saved")
        saved_root = os.path.join(self.setup, f"apply-{kind}-{n}.saved")
        self.copy_tree(up, saved_up)
        self.copy_tree(root, saved_root)
        return up, saved_up, root, saved_root

    def timed_apply(self, up, saved_up, root, saved_root, bumped, env_extra=None):
        self.copy_tree(saved_up, up)
        self.copy_root(saved_root, root)
        os.sync()  # so the copy's dirty pages are not flushed by the sync's first fsync
        r = self.updater("sync", "-q", "-j", self.jobs, "--modules-path", root,
                         env_extra=env_extra, what="updater sync (apply)")
        return r.ms

    def verify_applied(self, root, bumped):
        import json
        with open(os.path.join(root, "index.json")) as f:
            pkgs = json.load(f)["packages"]
        at2 = sorted(k for k, v in pkgs.items() if v == "2.0.0")
        want = sorted(mod_name(i) for i in bumped)
        if at2 != want:
            msg = f"after sync, {len(at2)} modules are at 2.0.0, expected {len(want)}"
            self.runner.failures.append(msg)
            raise CommandFailed(msg)

    def scenario_apply(self, n, reps):
        k = max(1, n // 10)
        bumped = list(range(0, n, n // k))[:k]
        # (2) executable entries, and the floor.
        up, saved_up, root, saved_root = self.prepare_apply(n, "exec", bumped)
        src = os.path.join(self.work, f"apply-exec-{n}-v2")
        self.runner.out(["git", "clone", "-q", up, src])
        names = [mod_name(i) for i in bumped]
        dest = os.path.join(self.work, f"apply-exec-{n}-floor")
        script = (
            'set -e\nsrc="$1"; dest="$2"; shift 2\n'
            'cd "$src/modules"\n'
            'cp -r "$@" "$dest"/\n'
            'for m in "$@"; do (cd "$dest/$m" && exec ./update); done\n'
        )
        ups, floors = [], []
        for rep in range(reps):
            ups.append(self.timed_apply(up, saved_up, root, saved_root, bumped))
            if rep == 0:
                self.verify_applied(root, bumped)
            self.fresh_dir(dest)
            os.mkdir(dest)
            os.sync()
            f = self.runner.run(["sh", "-c", script, "floor", src, dest, *names],
                                what="floor (cp -r + entry loop)")
            floors.append(f.ms)
        mu, mf = median(ups), median(floors)
        self.exec_apply_ms = mu
        self.row(2, f"`sync` applying {k} exec updates vs one `cp -r` + entry loop", n,
                 fmt_ms(mu), fmt_ms(mf), mu / mf, f"≤ {TARGET_APPLY_RATIO}×",
                 mu / mf <= TARGET_APPLY_RATIO, f"-j {self.jobs}; floor runs entries one by one")

        # (3) python main(args) entries, same repo shape. Each repetition also re-runs the
        # executable case, so the per-module difference is taken between paired runs.
        exec_args = (up, saved_up, root, saved_root, bumped)
        up, saved_up, root, saved_root = self.prepare_apply(n, "py", bumped)
        if 8 in self.scenarios:
            self.scenario_py_floor(n, k, reps, (up, saved_up, root, saved_root, bumped), names)
        if 3 not in self.scenarios:
            return
        # Fresh interpreters cost seconds per run: fewer repetitions (keeps the full run < 10 min).
        for label, extra, n_reps in (("fork-server (default)", None, reps),
                                     ("UPDATER_NO_FORKSERVER=1", {"UPDATER_NO_FORKSERVER": "1"},
                                      min(reps, 3))):
            pys, execs, diffs = [], [], []
            for rep in range(n_reps):
                e = self.timed_apply(*exec_args)
                p = self.timed_apply(up, saved_up, root, saved_root, bumped, env_extra=extra)
                if rep == 0:
                    self.verify_applied(root, bumped)
                pys.append(p)
                execs.append(e)
                diffs.append(p - e)
            mp, me = median(pys), median(execs)
            per = median(diffs) / k
            self.row(3, f"`sync` applying {k} python `main(args)` updates, {label}, vs the "
                        f"same with executable entries (2): cost per module", n,
                     fmt_ms(mp), fmt_ms(me), mp / me,
                     f"≤ {TARGET_PY_MS_PER_MODULE:.0f} ms/module",
                     per <= TARGET_PY_MS_PER_MODULE,
                     f"**{per:+.1f} ms per module** (median of {n_reps} paired differences / {k})")

    # -- scenarios 8 and 9 --------------------------------------------------------------------

    def scenario_py_floor(self, n, k, reps, py_args, names):
        """(8) The Python apply vs the in-process floor: copytree of the updated directories,
        then each imported and its main called, in one interpreter, nothing synced."""
        up = py_args[0]
        src = os.path.join(self.work, f"apply-py-{n}-v2")
        self.fresh_dir(src)
        self.runner.out(["git", "clone", "-q", up, src])
        dest = os.path.join(self.work, f"apply-py-{n}-floor")
        ups, floors = [], []
        for rep in range(reps):
            ups.append(self.timed_apply(*py_args))
            if rep == 0:
                self.verify_applied(py_args[2], py_args[4])
            self.fresh_dir(dest)
            os.mkdir(dest)
            os.sync()
            floors.append(self.runner.run(
                [self.python, PY_FLOOR, "copy", os.path.join(src, "modules"), dest, *names],
                what="floor (py_floor.py copy)").ms)
        mu, mf = median(ups), median(floors)
        self.row(8, f"`sync` applying {k} python `main(args)` updates vs the in-process Python "
                    f"floor (copytree + import + main, one interpreter)", n,
                 fmt_ms(mu), fmt_ms(mf), mu / mf, f"≤ {TARGET_PY_FLOOR_RATIO}×",
                 mu / mf <= TARGET_PY_FLOOR_RATIO,
                 f"-j {self.jobs}, fork-server; floor: bench/py_floor.py, no process per module,"
                 " no fsync")

    def scenario_run_enabled(self, reps):
        """(9) `sync --run enabled` with nothing new upstream: every module's main runs."""
        n = RUN_ENABLED_MODULES
        name = f"run-enabled-{n}.git"
        up = self.path_url(name)
        self.fresh_dir(up)
        make_upstream(self.runner, up, n, "py", 1, seed=11)
        root = self.synced_root(up, f"run-enabled-{n}", n, "py", f"{n} py modules")
        mods = os.path.join(root, "modules")
        names = [mod_name(i) for i in range(n)]
        sync = ["sync", "-q", "-j", self.jobs, "--run", "enabled", "--modules-path", root]
        self.updater(*sync, what="updater sync --run enabled (warm-up)")
        ups, floors = [], []
        for _ in range(reps):
            ups.append(self.updater(*sync, what="updater sync --run enabled").ms)
            floors.append(self.runner.run([self.python, PY_FLOOR, "call", mods, *names],
                                          what="floor (py_floor.py call)").ms)
        mu, mf = median(ups), median(floors)
        self.row(9, f"`sync --run enabled`, nothing changed, {n} python mains vs the "
                    f"in-process floor calling the same {n} mains", n,
                 fmt_ms(mu), fmt_ms(mf), mu / mf, f"≤ {TARGET_RUN_ENABLED_RATIO}×",
                 mu / mf <= TARGET_RUN_ENABLED_RATIO,
                 f"-j {self.jobs}, fork-server; floor: bench/py_floor.py call (one interpreter)")

    # -- scenario 4 ---------------------------------------------------------------------------

    def scenario_clone(self, n, history, reps):
        name = f"hist-{n}.git"
        up = self.path_url(name)
        t = time.time()
        per = max(1, n // 10)
        cursor = make_upstream(self.runner, up, n, "exec", history, seed=4, data_size=1024,
                               changed_per_commit=per)
        self.runner.out(["git", "-C", up, "repack", "-adq"])
        log(f"[4] upstream with {n} modules and {history} commits: {time.time() - t:.1f}s")
        url = self.git_url(name)
        # The tip tree alone.
        ls = self.runner.out(["git", "-C", up, "ls-tree", "-r", "-l", "HEAD"]).decode()
        tip_blobs = sum(int(line.split()[3]) for line in ls.splitlines())
        tip_files = len(ls.splitlines())
        archive = len(self.runner.out(["git", "-C", up, "archive", "--format=tar", "HEAD"]))

        shallow_ms, full_ms, d1_ms = [], [], []
        for rep in range(reps):
            root = self.fresh_dir(os.path.join(self.work, "clone-updater"))
            r = self.updater("check", "-q", "--repo-url", url, "--modules-path", root,
                             what="updater check (first clone, git://)")
            shallow_ms.append(r.ms)
            full = self.fresh_dir(os.path.join(self.work, "clone-full"))
            full_ms.append(self.git("clone", "-q", url, full,
                                    what="git clone (full)").ms)
            d1 = self.fresh_dir(os.path.join(self.work, "clone-depth1"))
            d1_ms.append(self.git("clone", "-q", "--depth", "1", url, d1,
                                  what="git clone --depth 1").ms)
        git_dir = os.path.join(root, ".updater", "repo", ".git")
        shallow = tree_bytes(git_dir)
        shallow_obj = tree_bytes(os.path.join(git_dir, "objects"))
        shallow_index = os.path.getsize(os.path.join(git_dir, "index")) \
            if os.path.exists(os.path.join(git_dir, "index")) else 0
        is_shallow = os.path.exists(os.path.join(git_dir, "shallow"))
        full_b = tree_bytes(os.path.join(full, ".git"))
        d1_b = tree_bytes(os.path.join(d1, ".git"))
        d1_obj = tree_bytes(os.path.join(d1, ".git", "objects"))
        ratio = shallow[0] / tip_blobs
        self.row(4, "first clone (updater over git://) `.git` bytes vs tip tree (sum of blobs)",
                 n, fmt_bytes(shallow[0]), fmt_bytes(tip_blobs), ratio,
                 f"≤ {TARGET_SHALLOW_RATIO}×", ratio <= TARGET_SHALLOW_RATIO and is_shallow,
                 f"{'shallow' if is_shallow else 'NOT shallow'}; objects/ {fmt_bytes(shallow_obj[0])},"
                 f" index {fmt_bytes(shallow_index)}, rest {fmt_bytes(shallow[0] - shallow_obj[0] - shallow_index)};"
                 f" {history} commits, {tip_files} files; `git archive` {fmt_bytes(archive)}")
        self.row(4, "first clone `.git` bytes: updater vs `git clone --depth 1` ", n,
                 fmt_bytes(shallow[0]), fmt_bytes(d1_b[0]), shallow[0] / d1_b[0], "", None,
                 f"depth-1 objects/ {fmt_bytes(d1_obj[0])}; full `git clone`: {fmt_bytes(full_b[0])}"
                 f" ({full_b[0] / shallow[0]:.1f}× updater's)")
        ms, mf, md = median(shallow_ms), median(full_ms), median(d1_ms)
        self.row(4, "first clone time: updater `check` (clone+checkout+plan) vs full `git clone`", n,
                 fmt_ms(ms), fmt_ms(mf), ms / mf, "", None,
                 f"`git clone --depth 1`: {fmt_ms(md)} ({ms / md:.2f}×)")

        # A later fetch of 5 new commits transfers only the new objects.
        old_tip = self.runner.out(["git", "-C", up, "rev-parse", "HEAD"]).decode().strip()
        rng = random.Random(44)
        commits = []
        for c in range(5):
            files = []
            for _ in range(per):
                i = cursor % n
                cursor += 1
                files.append((f"modules/{mod_name(i)}/index.json", "100644",
                              index_json(mod_name(i), f"1.1.{c}")))
                files.append((f"modules/{mod_name(i)}/data.txt", "100644", data_blob(rng, 1024)))
            commits.append((f"new {c}", files))
        add_commits(self.runner, up, commits, seed=5)
        new_tip = self.runner.out(["git", "-C", up, "rev-parse", "HEAD"]).decode().strip()
        objs = self.runner.out(["git", "-C", up, "rev-list", "--objects", f"{old_tip}..{new_tip}"])
        new_pack = len(self.runner.out(["git", "-C", up, "pack-objects", "--stdout", "-q"],
                                       stdin_bytes=objs))
        new_count = len(objs.splitlines())
        before = tree_bytes(os.path.join(git_dir, "objects"))[0]
        r = self.updater("check", "-q", "--repo-url", url, "--modules-path", root,
                         what="updater check (fetch of 5 commits)")
        after = tree_bytes(os.path.join(git_dir, "objects"))[0]
        fbefore = tree_bytes(os.path.join(full, ".git", "objects"))[0]
        g = self.git("-C", full, "fetch", "-q", "origin", what="git fetch (5 commits)")
        fafter = tree_bytes(os.path.join(full, ".git", "objects"))[0]
        delta = after - before
        self.row(4, "fetch of 5 new commits: updater objects/ growth vs a pack of just the new objects",
                 n, fmt_bytes(delta), fmt_bytes(new_pack), delta / new_pack, "only new objects",
                 delta <= 2 * new_pack + 4096,
                 f"{new_count} new objects; `git fetch` on the full clone grew {fmt_bytes(fafter - fbefore)};"
                 f" times {fmt_ms(r.ms)} vs {fmt_ms(g.ms)}")

    # -- the run --------------------------------------------------------------------------------

    def header(self):
        cpu = "unknown"
        try:
            with open("/proc/cpuinfo") as f:
                info = f.read()
            for key in ("model name", "Model", "Hardware", "CPU part"):
                for line in info.splitlines():
                    if line.split(":")[0].strip() == key:
                        cpu = line.split(":", 1)[1].strip()
                        break
                if cpu != "unknown":
                    break
        except OSError:
            pass
        git_v = self.runner.out(["git", "--version"]).decode().strip()
        py_v = sys.version.split()[0]
        try:
            upd_v = self.runner.out([self.bin, "--version"]).decode().strip()
        except CommandFailed:
            upd_v = "updater ?"
        rev = ""
        top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        try:
            rev = subprocess.run(["git", "-C", top, "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
        return (f"Machine: {os.cpu_count()} CPUs (nproc), {cpu}, Linux {os.uname().release}, "
                f"{mem_total()}; work dir on {filesystem_of(self.work)}; "
                f"{git_v}; Python {py_v}; {upd_v} ({rev}); reps {self.args.reps}, medians; "
                f"{time.strftime('%Y-%m-%d %H:%M')}")

    def table(self):
        lines = ["| # | measurement | modules | updater | floor | ratio | target | result | notes |",
                 "|---|---|---:|---:|---:|---:|---|---|---|"]
        for (sc, what, n, m, f, r, tgt, v, notes) in self.rows:
            lines.append(f"| {sc} | {what} | {n:,} | {m} | {f} | {fmt_ratio(r)} | {tgt} | {v} | {notes} |")
        return "\n".join(lines)

    def run(self):
        a = self.args
        sizes = a.sizes
        self.wait_for_daemon()
        started = time.time()
        self.rss_rows = []
        rss_size = max(sizes)
        scenarios = set(a.only) if a.only else {1, 2, 3, 4, 5, 6, 8, 9}
        self.scenarios = scenarios
        if scenarios & {1, 5}:
            for n in sizes:
                if 1 in scenarios or n == rss_size:
                    self.scenario_noop(n, a.reps, rss_size if 5 in scenarios else None)
            for n, transport, ru, rg in self.rss_rows:
                self.row(5, f"peak RSS of no-op `check` vs `git fetch`, {transport}", n,
                         f"{ru:.1f} MiB", f"{rg:.1f} MiB", ru / rg, f"≤ {TARGET_RSS_MIB:.0f} MiB",
                         ru <= TARGET_RSS_MIB,
                         "ru_maxrss from wait4, spawned by GNU time" if GNU_TIME else
                         "ru_maxrss from wait4 in the harness: floored at the harness's own RSS")
        log(f"scenarios 1/5 done in {time.time() - started:.0f}s")
        if 6 in scenarios:
            t = time.time()
            self.scenario_clone_rss(a.clone_rss_mib, max(1, min(a.reps, 3)))
            log(f"scenario 6 done in {time.time() - t:.0f}s")
        if scenarios & {2, 3, 8}:
            t = time.time()
            self.scenario_apply(a.apply_size, a.reps)
            log(f"scenarios 2/3/8 done in {time.time() - t:.0f}s")
        if 9 in scenarios:
            t = time.time()
            self.scenario_run_enabled(a.reps)
            log(f"scenario 9 done in {time.time() - t:.0f}s")
        if 4 in scenarios:
            t = time.time()
            self.scenario_clone(a.clone_size, a.clone_history, max(1, min(a.reps, 3)))
            log(f"scenario 4 done in {time.time() - t:.0f}s")
        elapsed = time.time() - started
        print(self.header())
        print()
        print(self.table())
        print()
        print(f"History depth of the no-op repositories: {a.history_depth} commits. "
              f"Entries run with -j {self.jobs}; Python: {self.python}. Total {elapsed:.0f} s.")


def parse_sizes(text):
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --sizes {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"bad --sizes {text!r}")
    return sizes


def main():
    ap = argparse.ArgumentParser(
        prog="bench/run.sh", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--smoke", action="store_true",
                    help="every scenario on 10 modules, 1 repetition (CI)")
    ap.add_argument("--sizes", type=parse_sizes, default=None,
                    help="module counts for the no-op check (default 10,100,1000,10000)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5)")
    ap.add_argument("--history-depth", type=int, default=None,
                    help="commits in the no-op repositories' history (default 20)")
    ap.add_argument("--apply-size", type=int, default=None,
                    help="modules in the apply scenarios (default 1000; a tenth are updated)")
    ap.add_argument("--clone-size", type=int, default=None,
                    help="modules in the first-clone scenario (default 1000)")
    ap.add_argument("--clone-history", type=int, default=500,
                    help="commits in the first-clone scenario (default 500)")
    ap.add_argument("--clone-rss-mib", type=int, default=None,
                    help="size of the repository of the first-clone RSS scenario (6), in MiB "
                         "of 1 MiB modules (default 60)")
    ap.add_argument("--only", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="run only these scenarios, e.g. 1,5")
    # Set by run.sh.
    ap.add_argument("--work", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--bin", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--git-port", type=int, required=True, help=argparse.SUPPRESS)
    ap.add_argument("--git-daemon-pid", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--setup", required=True, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.smoke:
        a.sizes = a.sizes or [10]
        a.reps = a.reps or 1
        a.apply_size = a.apply_size or 10
        a.clone_size = a.clone_size or 10
        a.history_depth = a.history_depth or 5
        a.clone_rss_mib = a.clone_rss_mib or 2
    a.sizes = a.sizes or [10, 100, 1000, 10000]
    a.reps = a.reps or 5
    a.history_depth = a.history_depth or 20
    a.clone_rss_mib = a.clone_rss_mib or 60
    a.apply_size = a.apply_size or min(1000, max(a.sizes))
    a.clone_size = a.clone_size or min(1000, max(a.sizes))
    if a.reps < 1:
        ap.error("--reps must be at least 1")

    bench = Bench(a)
    try:
        bench.run()
    except CommandFailed as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        if bench.rows:
            print(bench.header())
            print()
            print(bench.table())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
