//! The fault suite (SPEC §7, LESSONS 1, 3, 4, 9): the real binary is killed at every named crash
//! point (`UPDATER_CRASH_AT`, debug builds) and at random moments, runs race for the lock, and
//! staging, the network and the state files fail in other ways. After every fault the install
//! root must be in a state a crash can leave (each module byte-for-byte one complete copy), and
//! the next plain run must converge.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

type Snap = BTreeMap<PathBuf, (u32, Vec<u8>)>;

// ---------------------------------------------------------------------------------------------
// small helpers

/// xorshift64: deterministic, no crates.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// `updater --modules-path R --repo-url U --jobs 2 sync`, optionally with `UPDATER_CRASH_AT`.
fn sync(root: &InstallRoot, repo: &UpdatesRepo, crash: Option<&str>) -> Output {
    sync_url(root, &repo.url(), crash)
}

fn sync_url(root: &InstallRoot, url: &str, crash: Option<&str>) -> Output {
    let mut cmd = updater_at(root);
    cmd.arg("--repo-url").arg(url).args(["--jobs", "2", "sync"]);
    match crash {
        Some(c) => cmd.env("UPDATER_CRASH_AT", c),
        None => cmd.env_remove("UPDATER_CRASH_AT"),
    };
    cmd.output().expect("run updater")
}

/// A plain `std::process::Command` for the binary (for `spawn`), isolated like `updater_env`.
fn raw_command(root: &InstallRoot, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(updater_bin());
    isolate_env(&mut cmd, root.home.path());
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("UPDATER_CRASH_AT")
        .current_dir(root.home.path())
        .arg("--modules-path")
        .arg(root.path())
        .arg("--repo-url")
        .arg(url)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// [`dump`], shortened to its first 1200 and last 1800 characters.
fn short_dump(out: &Output) -> String {
    let d: Vec<char> = dump(out).chars().collect();
    if d.len() > 3000 {
        let head: String = d[..1200].iter().collect();
        let tail: String = d[d.len() - 1800..].iter().collect();
        format!("{head}\n[...]\n{tail}")
    } else {
        d.into_iter().collect()
    }
}

fn no_panic(out: &Output) -> bool {
    !all_output(out).contains("panicked")
}

fn snap(dir: &Path) -> Snap {
    snapshot(dir, &[])
}

/// Which paths differ between two snapshots (at most 10), for messages.
fn diff(a: &Snap, b: &Snap) -> String {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("-{}", k.display())),
            Some(w) if w != v => out.push(format!("~{}", k.display())),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.push(format!("+{}", k.display()));
        }
    }
    out.truncate(10);
    out.join(" ")
}

fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Names of the entries of a directory (empty when missing).
fn names_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

/// Journal entries `name -> version`, or an error when the journal does not parse.
fn journal_entries(root: &InstallRoot) -> Result<BTreeMap<String, String>, String> {
    let p = root.state_dir().join("journal.json");
    let Some(text) = read_opt(&p) else {
        return Ok(BTreeMap::new());
    };
    if let Err(e) = updater::journal::validate(&text) {
        return Err(format!("journal.json does not parse: {e:#}: {text:?}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    if let Some(m) = v["modules"].as_object() {
        for (k, e) in m {
            out.insert(k.clone(), e["version"].as_str().unwrap_or("").to_string());
        }
    }
    Ok(out)
}

/// Problems with leftovers after a run that should have cleaned up: staging, the journal, and
/// temp files of atomic writes or clones.
fn leftovers(root: &InstallRoot) -> Vec<String> {
    let mut p = Vec::new();
    let staging = names_in(&root.state_dir().join("staging"));
    if !staging.is_empty() {
        p.push(format!(".updater/staging not empty: {staging:?}"));
    }
    if root.state_dir().join("journal.json").exists() {
        p.push(format!(
            ".updater/journal.json still exists: {:?}",
            read_opt(&root.state_dir().join("journal.json"))
        ));
    }
    for dir in [root.path().to_path_buf(), root.state_dir()] {
        for n in names_in(&dir) {
            if n.starts_with(".tmp-") || n.starts_with(".clone-") {
                p.push(format!("leftover {}", dir.join(n).display()));
            }
        }
    }
    p
}

/// `<root>/index.json` parses as a global index (and returns its packages).
fn index_packages(root: &InstallRoot) -> Result<BTreeMap<String, String>, String> {
    let p = root.path().join("index.json");
    let text = read_opt(&p).ok_or_else(|| "index.json is missing".to_string())?;
    let idx = updater::global_index::GlobalIndex::parse(&p, &text)
        .map_err(|e| format!("index.json does not parse: {e:#}"))?;
    Ok(idx.packages().into_iter().collect())
}

/// The process group leaders recorded in `pids/` (entries write `$$` there), killed with their
/// whole group when they still run an entry of this install root. The files are removed.
fn kill_recorded_entries(pids_dir: &Path, marker: &str) -> usize {
    let mut killed = 0;
    for name in names_in(pids_dir) {
        let file = pids_dir.join(&name);
        // The file is named `<module>.<pid>`; its content may not be written yet.
        let pid = read_opt(&file)
            .and_then(|t| t.trim().parse::<u32>().ok())
            .or_else(|| name.rsplit('.').next().and_then(|p| p.parse().ok()));
        if let Some(pid) = pid {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                let st = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                if st.map(|s| s.success()).unwrap_or(false) {
                    killed += 1;
                }
            }
        }
        let _ = fs::remove_file(&file);
    }
    killed
}

// ---------------------------------------------------------------------------------------------
// 1. every named crash point

const OLD_MODS: [&str; 3] = ["alpha", "beta", "gamma"];
const NEW_MOD: &str = "delta";
const ALL_MODS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// Writes generation `gen` (1 or 2) of a crash-point module into the work tree. Generation 2
/// changes a file, adds one, removes one, retargets a symlink, adds a nested symlink and makes a
/// file executable. `beta` declares `<sys>/conf.txt` as a backup path and its entry rewrites it
/// (and fails once, after writing garbage into it, while `<sys>/fail-once-beta` exists); `gamma` has
/// a health check.
fn write_point_module(repo: &UpdatesRepo, sys: &Path, name: &str, gen: u32) {
    let d = format!("modules/{name}");
    let version = if name == NEW_MOD {
        "1.0.0".to_string()
    } else {
        format!("{gen}.0.0")
    };
    let mut meta = json!({ "schema_version": version });
    if name == "gamma" {
        meta["health"] = json!("health.sh");
    }
    let mut config = json!({ "note": format!("{name} generation {gen}") });
    let conf = sys.join("conf.txt");
    if name == "beta" {
        config["backup_paths"] = json!([conf.to_str().unwrap()]);
    }
    repo.write(
        &format!("{d}/index.json"),
        &to_json(&json!({ "metadata": meta, "configuration": config })),
    );
    // Every entry fails once (after spoiling the system path, for beta) while
    // `<sys>/fail-once-<name>` exists, so that `rolled_back` can be reached for each module.
    let marker = sys.join(format!("fail-once-{name}"));
    let m = marker.display();
    let c = conf.display();
    let (spoil, effect) = if name == "beta" {
        (
            format!("printf 'broken\\n' > '{c}'; "),
            format!(
                "printf 'beta %s\\n' \"$UPDATER_TO_VERSION\" > '{c}.tmp'\nmv -f '{c}.tmp' '{c}'\n"
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let script = format!(
        "#!/bin/sh\n# generation {gen}\nset -e\n\
         if [ -e '{m}' ]; then rm -f '{m}'; {spoil}echo 'failing once on purpose' >&2; exit 1; fi\n\
         {effect}\
         printf '%s %s->%s\\n' {name} \"${{UPDATER_FROM_VERSION:-}}\" \"$UPDATER_TO_VERSION\" \
         >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\n"
    );
    repo.write_exec(&format!("{d}/update"), &script);
    if name == "gamma" {
        repo.write_exec(
            &format!("{d}/health.sh"),
            &format!("#!/bin/sh\n# generation {gen}\ntest -f data/keep.txt\n"),
        );
    }
    repo.write(&format!("{d}/data/keep.txt"), &format!("keep {name}\n"));
    repo.write(
        &format!("{d}/data/change.txt"),
        &format!(
            "{name} generation {gen}\n{}\n",
            "x".repeat(100 * gen as usize)
        ),
    );
    if gen == 1 {
        repo.write(&format!("{d}/data/remove.txt"), "removed in generation 2\n");
        repo.write(&format!("{d}/data/tool"), "#!/bin/sh\ntrue\n");
        repo.symlink(&format!("{d}/link"), "data/keep.txt");
    } else {
        repo.remove(&format!("{d}/data/remove.txt"));
        repo.write(&format!("{d}/data/added.txt"), "added in generation 2\n");
        repo.write_exec(&format!("{d}/data/tool"), "#!/bin/sh\ntrue\n");
        repo.symlink(&format!("{d}/link"), "data/added.txt");
        repo.symlink(&format!("{d}/sub/deeper/link2"), "../../data/change.txt");
    }
}

fn write_repo_index(repo: &UpdatesRepo, packages: Value) {
    repo.write("index.json", &to_json(&global_index(packages)));
}

/// A repository with v1 of alpha/beta/gamma installed (by a first real sync) in `template`,
/// then v2 of all three plus the new module delta committed.
struct PointFixture {
    repo: UpdatesRepo,
    sys: tempfile::TempDir,
    template: InstallRoot,
    v1: BTreeMap<String, Snap>,
    v2: BTreeMap<String, Snap>,
}

const CONF_V1: &str = "beta 1.0.0\n";
const CONF_V2: &str = "beta 2.0.0\n";

impl PointFixture {
    fn conf(&self) -> PathBuf {
        self.sys.path().join("conf.txt")
    }

    fn new() -> PointFixture {
        let repo = UpdatesRepo::new();
        let sys = tempdir("updater-crash-sys.");
        fs::write(sys.path().join("conf.txt"), "original\n").unwrap();
        for m in OLD_MODS {
            write_point_module(&repo, sys.path(), m, 1);
        }
        write_repo_index(
            &repo,
            json!({"alpha": "1.0.0", "beta": "1.0.0", "gamma": "1.0.0"}),
        );
        repo.commit("v1 of alpha, beta, gamma");
        let v1: BTreeMap<String, Snap> = OLD_MODS
            .iter()
            .map(|m| (m.to_string(), snap(&repo.module_dir(m))))
            .collect();

        let template = InstallRoot::new();
        let out = sync(&template, &repo, None);
        assert_eq!(code(&out), 0, "first sync failed\n{}", dump(&out));
        assert_eq!(
            fs::read_to_string(sys.path().join("conf.txt")).unwrap(),
            CONF_V1,
            "beta's entry did not write the backup path"
        );
        for m in OLD_MODS {
            let got = snap(&template.module_dir(m));
            assert!(
                got == v1[m],
                "the first sync did not install {m} byte-for-byte: {}",
                diff(&v1[m], &got)
            );
        }

        for m in ALL_MODS {
            write_point_module(&repo, sys.path(), m, 2);
        }
        write_repo_index(
            &repo,
            json!({"alpha": "2.0.0", "beta": "2.0.0", "gamma": "2.0.0", "delta": "1.0.0"}),
        );
        repo.commit("v2 of alpha, beta, gamma; new module delta");
        let v2 = ALL_MODS
            .iter()
            .map(|m| (m.to_string(), snap(&repo.module_dir(m))))
            .collect();
        PointFixture {
            repo,
            sys,
            template,
            v1,
            v2,
        }
    }

    /// A fresh install root in the state the template's first sync left, and the system path
    /// reset to match it.
    fn fresh_root(&self) -> InstallRoot {
        let root = InstallRoot::new();
        copy_tree(self.template.path(), root.path());
        fs::write(self.conf(), CONF_V1).unwrap();
        for m in ALL_MODS {
            let _ = fs::remove_file(self.sys.path().join(format!("fail-once-{m}")));
        }
        let _ = fs::remove_file(self.sys.path().join("conf.txt.tmp"));
        root
    }

    /// What a crash may leave: each module one complete copy, nothing missing but the new
    /// module, the index readable, the backup path one of its two states, the journal readable.
    fn torn(&self, root: &InstallRoot) -> Vec<String> {
        let mut p = Vec::new();
        for m in ALL_MODS {
            let dir = root.module_dir(m);
            if !dir.exists() {
                if m != NEW_MOD {
                    p.push(format!("module {m} is missing"));
                }
                continue;
            }
            let got = snap(&dir);
            let is_v2 = got == self.v2[m];
            let is_v1 = self.v1.get(m).is_some_and(|v1| got == *v1);
            if !is_v1 && !is_v2 {
                p.push(format!(
                    "module {m} is torn: vs v1 [{}] vs v2 [{}]",
                    self.v1.get(m).map(|v| diff(v, &got)).unwrap_or_default(),
                    diff(&self.v2[m], &got)
                ));
            }
        }
        let extra: Vec<String> = names_in(&root.path().join("modules"))
            .into_iter()
            .filter(|n| !ALL_MODS.contains(&n.as_str()))
            .collect();
        if !extra.is_empty() {
            p.push(format!("unexpected entries in modules/: {extra:?}"));
        }
        if let Err(e) = index_packages(root) {
            p.push(e);
        }
        if let Err(e) = journal_entries(root) {
            p.push(e);
        }
        let conf = read_opt(&self.conf()).unwrap_or_default();
        if conf != CONF_V1 && conf != CONF_V2 {
            p.push(format!("backup path conf.txt is {conf:?}"));
        }
        p
    }

    /// After a clean run: everything at v2, the index exact, the entry's effect present, the
    /// old copies kept as backups, nothing left over.
    fn converged(&self, root: &InstallRoot) -> Vec<String> {
        let mut p = Vec::new();
        for m in ALL_MODS {
            let got = snap(&root.module_dir(m));
            if got != self.v2[m] {
                p.push(format!(
                    "module {m} is not v2 after recovery: [{}]",
                    diff(&self.v2[m], &got)
                ));
            }
        }
        for m in OLD_MODS {
            let b = snap(&root.state_dir().join("backup").join(m));
            if b != self.v1[m] {
                p.push(format!(
                    "the kept backup of {m} is not its v1 copy: [{}]",
                    diff(&self.v1[m], &b)
                ));
            }
        }
        let want: BTreeMap<String, String> = [
            ("alpha", "2.0.0"),
            ("beta", "2.0.0"),
            ("gamma", "2.0.0"),
            ("delta", "1.0.0"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        match index_packages(root) {
            Ok(got) if got == want => {}
            Ok(got) => p.push(format!("index.json packages are {got:?}, want {want:?}")),
            Err(e) => p.push(e),
        }
        let conf = read_opt(&self.conf()).unwrap_or_default();
        if conf != CONF_V2 {
            p.push(format!(
                "backup path conf.txt is {conf:?}, want {CONF_V2:?}"
            ));
        }
        p.extend(leftovers(root));
        p
    }
}

/// Whether a crash point can be reached by the first (crashing) run of a case.
fn reachable(point: &str, module: Option<&str>) -> bool {
    match point {
        // Only reached when a journal exists at the start of a run (see the recovery cases).
        "recovering" => false,
        // Only reached on a failure: the module's entry (beta's, without a module) is made to
        // fail once for these cases.
        "rolled_back" => true,
        // A new module has no old copy to keep.
        "backup_kept" => module != Some(NEW_MOD),
        // Passed with no module name.
        "index_written" => module.is_none(),
        _ => true,
    }
}

#[derive(Debug, Clone)]
enum Job {
    /// Crash at `point` (`:module`), then a clean run.
    Point(&'static str, Option<&'static str>),
    /// Crash at `first`, then crash in recovery (`recovering`, or `recovering:<the last
    /// journaled module>` when the flag is set), then a clean run.
    Recovery(&'static str, bool),
}

#[derive(Default)]
struct Tally {
    checkpoints: usize,
    kills: usize,
    torn: usize,
    problems: Vec<String>,
}

fn run_job(fx: &PointFixture, job: &Job, tally: &Mutex<Tally>) {
    let root = fx.fresh_root();
    let mut problems = Vec::new();
    let mut kills = 0;
    let mut torn = false;
    let mut checkpoints = 0;
    let label;
    match job {
        Job::Point(point, module) => {
            let spec = match module {
                Some(m) => format!("{point}:{m}"),
                None => point.to_string(),
            };
            label = format!("UPDATER_CRASH_AT={spec}");
            let marker = fx
                .sys
                .path()
                .join(format!("fail-once-{}", module.unwrap_or("beta")));
            if *point == "rolled_back" && reachable(point, *module) {
                fs::write(&marker, "").unwrap();
            }
            checkpoints += 1;
            let out = sync(&root, &fx.repo, Some(&spec));
            let killed = out.status.signal() == Some(9);
            if killed {
                kills += 1;
            }
            if reachable(point, *module) {
                if !killed {
                    problems.push(format!(
                        "expected death by SIGKILL, got {}\n{}",
                        out.status,
                        short_dump(&out)
                    ));
                }
                if marker.exists() {
                    problems.push(
                        "the armed entry never ran (its fail-once marker is still there)".into(),
                    );
                }
            } else if code(&out) != 0 {
                problems.push(format!(
                    "the point cannot be reached, so the run should succeed; got {}\n{}",
                    out.status,
                    short_dump(&out)
                ));
            }
            let t = fx.torn(&root);
            if !t.is_empty() {
                torn = true;
                problems.extend(t.into_iter().map(|x| format!("after the crash: {x}")));
            }
        }
        Job::Recovery(first, per_module) => {
            label = format!(
                "UPDATER_CRASH_AT={first}, then recovering{}",
                if *per_module { ":<module>" } else { "" }
            );
            checkpoints += 1;
            let out = sync(&root, &fx.repo, Some(first));
            if out.status.signal() == Some(9) {
                kills += 1;
            } else {
                problems.push(format!(
                    "first run: expected SIGKILL, got {}\n{}",
                    out.status,
                    short_dump(&out)
                ));
            }
            let journaled = match journal_entries(&root) {
                Ok(j) => j,
                Err(e) => {
                    problems.push(e);
                    BTreeMap::new()
                }
            };
            if journaled.is_empty() {
                problems.push(format!(
                    "no journal entry after a crash at {first}, so recovery has nothing to do"
                ));
            } else {
                let spec = if *per_module {
                    format!("recovering:{}", journaled.keys().last().unwrap())
                } else {
                    "recovering".to_string()
                };
                checkpoints += 1;
                let out = sync(&root, &fx.repo, Some(&spec));
                if out.status.signal() == Some(9) {
                    kills += 1;
                } else {
                    problems.push(format!(
                        "second run ({spec}): expected SIGKILL, got {}\n{}",
                        out.status,
                        short_dump(&out)
                    ));
                }
            }
            let t = fx.torn(&root);
            if !t.is_empty() {
                torn = true;
                problems.extend(t.into_iter().map(|x| format!("after the crashes: {x}")));
            }
        }
    }
    let out = sync(&root, &fx.repo, None);
    if code(&out) != 0 {
        problems.push(format!(
            "the clean run after the crash failed\n{}",
            short_dump(&out)
        ));
    } else if !no_panic(&out) {
        problems.push(format!("the clean run panicked\n{}", short_dump(&out)));
    }
    let c = fx.converged(&root);
    problems.extend(c.into_iter().map(|x| format!("after the clean run: {x}")));

    let mut t = tally.lock().unwrap();
    t.checkpoints += checkpoints;
    t.kills += kills;
    if torn {
        t.torn += 1;
    }
    for p in problems {
        t.problems.push(format!("[{label}] {p}"));
    }
}

#[test]
fn every_crash_point_leaves_whole_modules_and_the_next_run_converges() {
    let started = Instant::now();
    let points = updater::fault::POINTS;
    let mut jobs = VecDeque::new();
    for &p in points {
        jobs.push_back(Job::Point(p, None));
        if p != "index_written" && p != "recovering" {
            for m in ALL_MODS {
                jobs.push_back(Job::Point(p, Some(m)));
            }
        }
    }
    for first in [
        "journal_staging",
        "staged",
        "swapped",
        "entry_done",
        "committing",
        "backup_kept",
    ] {
        jobs.push_back(Job::Recovery(first, false));
        jobs.push_back(Job::Recovery(first, true));
    }
    let n_jobs = jobs.len();
    let queue = Mutex::new(jobs);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let fx = PointFixture::new();
                loop {
                    let job = queue.lock().unwrap().pop_front();
                    let Some(job) = job else { break };
                    run_job(&fx, &job, &tally);
                }
            });
        }
    });
    let t = tally.into_inner().unwrap();
    println!(
        "crash-points: {} points, {} cases, {} checkpoints, {} kills, {} torn states ({:.1}s)",
        points.len(),
        n_jobs,
        t.checkpoints,
        t.kills,
        t.torn,
        started.elapsed().as_secs_f64()
    );
    assert!(
        t.problems.is_empty(),
        "{} problems:\n{}",
        t.problems.len(),
        t.problems.join("\n\n")
    );
    assert_eq!(t.torn, 0);
}

// ---------------------------------------------------------------------------------------------
// 2. random SIGKILLs

const RAND_MODS: usize = 6;
const RAND_BACKUP_MOD: usize = 2;

fn rand_name(i: usize) -> String {
    format!("r{i}")
}

const RAND_HEALTH_MOD: usize = 4;
const CONF_BROKEN: &str = "r2 broken\n";

/// Generations whose r2 entry spoils the system path and fails.
fn rand_fails(gen: u64) -> bool {
    gen % 5 == 4
}

fn conf_for(version: u64) -> String {
    format!("r{RAND_BACKUP_MOD} {version}.0.0\n")
}

/// Generation `gen` of a random-suite module: version `gen.0.0`, an entry that records its pid,
/// sleeps 20–80 ms, and (for r2) rewrites the backup path. The shape alternates with the parity
/// of `gen` (files added and removed, a symlink retargeted, a mode flipped).
fn write_rand_module(repo: &UpdatesRepo, sys: &Path, i: usize, gen: u64, rng: &mut XorShift) {
    let name = rand_name(i);
    let d = format!("modules/{name}");
    let conf = sys.join("conf.txt");
    let mut config = json!({ "note": format!("{name} generation {gen}") });
    if i == RAND_BACKUP_MOD {
        config["backup_paths"] = json!([conf.to_str().unwrap()]);
    }
    let pids = sys.join("pids");
    let sleep_ms = rng.range(20, 80);
    let c = conf.display();
    let write_conf = if i != RAND_BACKUP_MOD {
        String::new()
    } else if rand_fails(gen) {
        // Spoil the system path, then fail: the rollback must restore it.
        format!("printf '{CONF_BROKEN}' > '{c}'\necho 'failing on purpose' >&2\nexit 1\n")
    } else {
        format!(
            "printf 'r{RAND_BACKUP_MOD} %s\\n' \"$UPDATER_TO_VERSION\" > '{c}.tmp'\nmv -f '{c}.tmp' '{c}'\n"
        )
    };
    let mut meta =
        json!({ "schema_version": format!("{gen}.0.0"), "priority": 10 * (i as i64 % 3) });
    if i == RAND_HEALTH_MOD {
        meta["health"] = json!("health.sh");
        repo.write_exec(
            &format!("{d}/health.sh"),
            &format!("#!/bin/sh\n# generation {gen}\necho healthy\nsleep 0.01\n"),
        );
    }
    repo.write(
        &format!("{d}/index.json"),
        &to_json(&json!({ "metadata": meta, "configuration": config })),
    );
    // Writing to stdout after the updater died kills the script (SIGPIPE, or set -e on EPIPE),
    // so an orphaned entry cannot touch the system path after its run was killed.
    repo.write_exec(
        &format!("{d}/update"),
        &format!(
            "#!/bin/sh\nset -e\necho \"start $$\"\necho $$ > '{p}/{name}.'$$\n\
             sleep 0.{sleep_ms:03}\necho slept\n{write_conf}rm -f '{p}/{name}.'$$\n",
            p = pids.display()
        ),
    );
    repo.write(
        &format!("{d}/data/v.txt"),
        &format!("{name} generation {gen}\n"),
    );
    if gen % 2 == 0 {
        repo.remove(&format!("{d}/data/odd.txt"));
        repo.remove(&format!("{d}/sub"));
        repo.write(&format!("{d}/data/even.txt"), &format!("even {gen}\n"));
        repo.symlink(&format!("{d}/link"), "data/even.txt");
        repo.write_exec(&format!("{d}/data/tool"), "#!/bin/sh\n");
    } else {
        repo.remove(&format!("{d}/data/even.txt"));
        repo.write(&format!("{d}/data/odd.txt"), &format!("odd {gen}\n"));
        repo.write(
            &format!("{d}/sub/deep/f.txt"),
            &"o".repeat(gen as usize * 10),
        );
        repo.symlink(&format!("{d}/link"), "data/v.txt");
        repo.write(&format!("{d}/data/tool"), "#!/bin/sh\n");
    }
}

/// The major number of a version string ("7.0.0" -> 7).
fn major(v: &str) -> Option<u64> {
    v.split('.').next().and_then(|m| m.parse().ok())
}

/// The major version in `<dir>/index.json`.
fn module_major(dir: &Path) -> Option<u64> {
    read_opt(&dir.join("index.json"))
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["metadata"]["schema_version"].as_str().and_then(major))
}

/// How a random-suite run is stopped. Decided from events, never from the clock: a named crash
/// point (`UPDATER_CRASH_AT`), or a SIGKILL sent once the run has started `n` entry points (their
/// pid files appear), so that kills also land while entries run.
#[derive(Debug, Clone)]
enum Kill {
    At(String),
    AfterEntries(usize),
}

fn random_kill(rng: &mut XorShift) -> Kill {
    // Every point a plain run can reach ("recovering" needs a journal, which may or may not be
    // there; when it is not, the run simply finishes).
    let points = updater::fault::POINTS;
    match rng.range(0, 3) {
        0 => Kill::AfterEntries(rng.range(1, 4) as usize),
        _ => {
            let p = points[rng.range(0, points.len() as u64 - 1) as usize];
            let m = rng.range(0, RAND_MODS as u64);
            if m as usize == RAND_MODS {
                Kill::At(p.to_string())
            } else {
                Kill::At(format!("{p}:{}", rand_name(m as usize)))
            }
        }
    }
}

#[test]
fn random_sigkills_never_leave_a_torn_module_and_a_clean_run_converges() {
    const ITERATIONS: usize = 24;
    let mut rng = XorShift::new(0x5eed_c0ffee_u64);
    let repo = UpdatesRepo::new();
    let sys = tempdir("updater-crash-rand.");
    let pids = sys.path().join("pids");
    fs::create_dir_all(&pids).unwrap();
    let conf = sys.path().join("conf.txt");
    fs::write(&conf, "original\n").unwrap();
    let logs = sys.path().join("logs");
    fs::create_dir_all(&logs).unwrap();

    let mut snaps: HashMap<(usize, u64), Snap> = HashMap::new();
    fn commit_gen(
        repo: &UpdatesRepo,
        sys: &Path,
        snaps: &mut HashMap<(usize, u64), Snap>,
        gen: u64,
        rng: &mut XorShift,
    ) {
        for i in 0..RAND_MODS {
            write_rand_module(repo, sys, i, gen, rng);
        }
        repo.commit(&format!("generation {gen}"));
        for i in 0..RAND_MODS {
            snaps.insert((i, gen), snap(&repo.module_dir(&rand_name(i))));
        }
    }

    let root = InstallRoot::new();
    let marker = root.path().to_str().unwrap().to_string();
    let mut gen = 1;
    commit_gen(&repo, sys.path(), &mut snaps, gen, &mut rng);
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "setup sync failed\n{}", dump(&out));
    assert_eq!(read_opt(&conf).as_deref(), Some(conf_for(1).as_str()));
    // The lowest version each module may be at: the last one seen committed (no journal entry).
    let mut committed = [1u64; RAND_MODS];

    let (mut iterations, mut kills, mut torn, mut finished_early, mut orphans) = (0, 0, 0, 0, 0);
    let mut problems: Vec<String> = Vec::new();
    while iterations < ITERATIONS {
        iterations += 1;
        gen += 1;
        commit_gen(&repo, sys.path(), &mut snaps, gen, &mut rng);
        orphans += kill_recorded_entries(&pids, &marker);
        let how = random_kill(&mut rng);
        let out_file = fs::File::create(logs.join("out.txt")).unwrap();
        let err_file = fs::File::create(logs.join("err.txt")).unwrap();
        let mut cmd = raw_command(&root, &repo.url(), &["--jobs", "2", "sync"]);
        cmd.stdout(out_file).stderr(err_file);
        if let Kill::At(point) = &how {
            cmd.env("UPDATER_CRASH_AT", point);
        }
        let mut child = cmd.spawn().expect("spawn updater");
        let status = match how {
            Kill::At(_) => child.wait().unwrap(),
            Kill::AfterEntries(n) => {
                // Poll for the event (n pid files, or the run's end); the bound only keeps a
                // broken run from hanging the suite.
                let mut status = None;
                for _ in 0..60_000 {
                    if let Some(s) = child.try_wait().unwrap() {
                        status = Some(s);
                        break;
                    }
                    if names_in(&pids).len() >= n {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                match status {
                    Some(s) => s,
                    None => {
                        let _ = child.kill();
                        child.wait().unwrap()
                    }
                }
            }
        };
        let label = format!("iteration {iterations} (generation {gen}, kill {how:?})");
        if status.signal() == Some(9) {
            kills += 1;
        } else {
            finished_early += 1;
            let want = if rand_fails(gen) { 3 } else { 0 };
            if status.code() != Some(want) {
                problems.push(format!(
                    "[{label}] a run that finished exited {status}, want {want}\n{}\n{}",
                    read_opt(&logs.join("out.txt")).unwrap_or_default(),
                    read_opt(&logs.join("err.txt")).unwrap_or_default()
                ));
            }
        }
        orphans += kill_recorded_entries(&pids, &marker);

        // The invariants.
        let mut t = Vec::new();
        let journal = match journal_entries(&root) {
            Ok(j) => j,
            Err(e) => {
                t.push(e);
                BTreeMap::new()
            }
        };
        let mut installed = [0u64; RAND_MODS];
        for i in 0..RAND_MODS {
            let name = rand_name(i);
            let dir = root.module_dir(&name);
            if !dir.is_dir() {
                t.push(format!("module {name} is missing"));
                continue;
            }
            let v = module_major(&dir);
            let Some(v) = v else {
                t.push(format!("module {name}: its index.json is unreadable"));
                continue;
            };
            installed[i] = v;
            let got = snap(&dir);
            match snaps.get(&(i, v)) {
                Some(want) if *want == got => {}
                Some(want) => t.push(format!(
                    "module {name} is torn: claims generation {v} but differs [{}]",
                    diff(want, &got)
                )),
                None => t.push(format!("module {name} is at unknown generation {v}")),
            }
            if v < committed[i] {
                t.push(format!(
                    "module {name} went back to {v} though {} was committed",
                    committed[i]
                ));
            }
        }
        if let Err(e) = index_packages(&root) {
            t.push(e);
        }
        let c = read_opt(&conf).unwrap_or_default();
        // The system path matches the installed copy, except while an update of its module is
        // journaled: then it may also match the journaled version or the old copy in staging.
        let mut allowed = vec![conf_for(installed[RAND_BACKUP_MOD])];
        let backup_mod = rand_name(RAND_BACKUP_MOD);
        if let Some(j) = journal.get(&backup_mod) {
            if let Some(jv) = major(j) {
                allowed.push(conf_for(jv));
                if rand_fails(jv) {
                    allowed.push(CONF_BROKEN.to_string());
                }
            }
            let staged = root
                .state_dir()
                .join("staging")
                .join(&backup_mod)
                .join("tree");
            if let Some(sv) = module_major(&staged) {
                allowed.push(conf_for(sv));
            }
        }
        if !allowed.contains(&c) {
            t.push(format!(
                "backup path is {c:?}; expected one of {allowed:?} (journal: {journal:?})"
            ));
        }
        for i in 0..RAND_MODS {
            if !journal.contains_key(&rand_name(i)) && installed[i] > 0 {
                committed[i] = committed[i].max(installed[i]);
            }
        }
        if !t.is_empty() {
            torn += 1;
            problems.push(format!("[{label}] {}", t.join("; ")));
        }
    }

    orphans += kill_recorded_entries(&pids, &marker);
    if rand_fails(gen) {
        gen += 1;
        commit_gen(&repo, sys.path(), &mut snaps, gen, &mut rng);
    }
    let out = sync(&root, &repo, None);
    if code(&out) != 0 {
        problems.push(format!("the final clean run failed\n{}", short_dump(&out)));
    }
    // Files the product may have left next to the system path (restore temp files).
    let strays: Vec<String> = names_in(sys.path())
        .into_iter()
        .filter(|n| !["conf.txt", "conf.txt.tmp", "pids", "logs"].contains(&n.as_str()))
        .collect();
    if !strays.is_empty() {
        problems.push(format!(
            "final: stray files next to the system path: {strays:?}"
        ));
    }
    for i in 0..RAND_MODS {
        let got = snap(&root.module_dir(&rand_name(i)));
        if got != snaps[&(i, gen)] {
            problems.push(format!(
                "final: module {} is not at generation {gen} [{}]",
                rand_name(i),
                diff(&snaps[&(i, gen)], &got)
            ));
        }
    }
    let want: BTreeMap<String, String> = (0..RAND_MODS)
        .map(|i| (rand_name(i), format!("{gen}.0.0")))
        .collect();
    match index_packages(&root) {
        Ok(p) if p == want => {}
        Ok(p) => problems.push(format!("final: index packages {p:?}, want {want:?}")),
        Err(e) => problems.push(format!("final: {e}")),
    }
    if read_opt(&conf).as_deref() != Some(conf_for(gen).as_str()) {
        problems.push(format!(
            "final: backup path is {:?}, want {:?}",
            read_opt(&conf),
            conf_for(gen)
        ));
    }
    problems.extend(leftovers(&root).into_iter().map(|p| format!("final: {p}")));

    println!(
        "crash-suite: {iterations} checkpoints, {kills} kills, {torn} torn states \
         ({finished_early} runs finished before their kill point, {orphans} orphaned entries killed)"
    );
    assert_eq!(iterations, ITERATIONS);
    // The kill points are drawn from a fixed seed: at least some of them are reached.
    assert!(kills > 0, "no run was killed");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    assert_eq!(torn, 0);
}

// ---------------------------------------------------------------------------------------------
// 3. the lock

/// A module whose entry records its pid in `<sys>/pids/` and sleeps `secs` while `<sys>/slow`
/// exists (always, when `always`).
fn slow_module(
    repo: &UpdatesRepo,
    sys: &Path,
    name: &str,
    version: &str,
    secs: &str,
    always: bool,
) {
    repo.add_module(name, version);
    let pids = sys.join("pids");
    let slow = sys.join("slow");
    let cond = if always {
        "true".to_string()
    } else {
        format!("[ -e '{}' ]", slow.display())
    };
    repo.write_exec(
        &format!("modules/{name}/update"),
        &format!(
            "#!/bin/sh\necho $$ > '{p}/{name}.'$$\nif {cond}; then sleep {secs}; fi\n\
             printf '%s %s->%s\\n' {name} \"${{UPDATER_FROM_VERSION:-}}\" \"$UPDATER_TO_VERSION\" \
             >> \"$UPDATER_MODULES_PATH/{RUNS_LOG}\"\nrm -f '{p}/{name}.'$$\n",
            p = pids.display()
        ),
    );
}

#[test]
fn two_syncs_started_together_one_runs_the_other_names_the_holder_and_exits_1_at_once() {
    let repo = UpdatesRepo::new();
    let sys = tempdir("updater-crash-lock.");
    fs::create_dir_all(sys.path().join("pids")).unwrap();
    // The holder's entry blocks until the test removes `<sys>/hold`: the refused run must end
    // while the holder is provably still running (an event, not a duration).
    let hold = sys.path().join("hold");
    repo.add_module("slow", "1.0.0");
    repo.write_exec(
        "modules/slow/update",
        &format!(
            "#!/bin/sh\nwhile [ -f '{h}' ]; do sleep 0.01; done\n{}",
            update_script("slow").trim_start_matches("#!/bin/sh\n"),
            h = hold.display()
        ),
    );
    repo.commit("a slow module");
    // Several rounds, since the race is about timing: on a fresh root (both runs race to create
    // the state directory and take the lock), and on one whose lock file still names a dead run.
    const ROUNDS: usize = 8;
    let mut unnamed = Vec::new();
    for round in 0..ROUNDS {
        let root = InstallRoot::new();
        let stale = round % 2 == 1;
        let dead = dead_pid();
        if stale {
            fs::create_dir_all(root.state_dir()).unwrap();
            fs::write(root.lock_path(), format!("{dead}\n")).unwrap();
        }
        fs::write(&hold, "").unwrap();
        let spawn = || {
            raw_command(&root, &repo.url(), &["sync"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn updater")
        };
        let a = spawn();
        let b = spawn();
        let pids = [a.id(), b.id()];
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let waiter = |c: std::process::Child, i: usize| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let out = c.wait_with_output().unwrap();
                let _ = tx.send(i);
                out
            })
        };
        let (ha, hb) = (waiter(a, 0), waiter(b, 1));
        // The first run to end must be the refused one, while the holder is blocked.
        let first = rx.recv().unwrap();
        fs::remove_file(&hold).unwrap();
        let outs = [ha.join().unwrap(), hb.join().unwrap()];
        let results: Vec<(Output, bool)> = outs
            .into_iter()
            .enumerate()
            .map(|(i, o)| (o, i == first))
            .collect();
        let codes: Vec<i32> = results.iter().map(|(o, _)| code(o)).collect();
        let all = format!(
            "round {round}: A (pid {}, ended first: {}):\n{}\nB (pid {}, ended first: {}):\n{}",
            pids[0],
            results[0].1,
            dump(&results[0].0),
            pids[1],
            results[1].1,
            dump(&results[1].0)
        );
        let winner = codes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or_else(|| panic!("neither run succeeded\n{all}"));
        let loser = 1 - winner;
        assert_eq!(codes[loser], 1, "the other run must exit 1\n{all}");
        assert!(no_panic(&results[loser].0), "{all}");
        assert!(
            results[loser].1,
            "the refused run must exit at once, while the holder still runs\n{all}"
        );
        assert_eq!(
            root.runs(),
            vec!["slow ->1.0.0".to_string()],
            "the module must be installed exactly once\n{all}"
        );
        assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
        let text = all_output(&results[loser].0);
        if !text.contains(&format!("pid {}", pids[winner])) {
            let line = text
                .lines()
                .find(|l| l.contains("lock"))
                .unwrap_or("")
                .to_string();
            unnamed.push(format!(
                "round {round} ({}; holder pid {}, dead pid {dead}): {line}",
                if stale {
                    "the lock file named a dead run"
                } else {
                    "fresh root"
                },
                pids[winner]
            ));
        }
    }
    assert!(
        unnamed.is_empty(),
        "the refused run must name the holder's pid (SPEC §7, LESSONS 3); it did not in {} of {ROUNDS} \
         rounds:\n{}",
        unnamed.len(),
        unnamed.join("\n")
    );
}

/// Whether `pid` is a process that is not a zombie.
fn live_process(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

#[test]
fn a_lock_left_by_a_sigkilled_run_never_blocks_the_next_run() {
    let repo = UpdatesRepo::new();
    let sys = tempdir("updater-crash-lock.");
    let pids = sys.path().join("pids");
    fs::create_dir_all(&pids).unwrap();
    slow_module(&repo, sys.path(), "slow", "1.0.0", "5", false);
    repo.add_module("quick", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();

    // (i) killed by a crash point while holding the lock: the file stays, naming a dead pid.
    let out = sync(&root, &repo, Some("entry_started"));
    assert_eq!(out.status.signal(), Some(9), "{}", dump(&out));
    let recorded = fs::read_to_string(root.lock_path()).expect("the lock file stays");
    assert!(
        !recorded.trim().is_empty(),
        "the lock file names the dead run"
    );
    assert!(!is_flocked(&root.lock_path()));
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert!(
        !all_output(&out).contains("holds the lock"),
        "{}",
        dump(&out)
    );

    // (ii) SIGKILLed from outside while its entry runs: the orphaned entry keeps running, and
    // must not keep the lock (the lock's file descriptor must not leak into entries).
    repo.set_version("slow", "2.0.0");
    repo.set_version("quick", "2.0.0");
    repo.commit("v2");
    fs::write(sys.path().join("slow"), "").unwrap();
    let mut child = raw_command(&root, &repo.url(), &["--jobs", "1", "sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Kill once the entry runs and updater has recorded its process group (the record is
    // written just after the spawn; on a loaded machine the entry may start first).
    let record = root.path().join(".updater").join("running").join("slow");
    while names_in(&pids).is_empty() || !record.is_file() {
        assert!(Instant::now() < deadline, "the slow entry never started");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9));
    fs::remove_file(sys.path().join("slow")).unwrap();
    // The entry creates its pid file, then writes it: wait for the number.
    let pid_file = pids.join(&names_in(&pids)[0]);
    let entry_pid: u32 = loop {
        if let Ok(pid) = fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .trim()
            .parse()
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the slow entry never wrote its pid"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        live_process(entry_pid),
        "the orphaned entry should still be sleeping"
    );
    let out = sync(&root, &repo, None);
    // The next run takes the lock although the orphan runs (the lock's descriptor did not leak
    // into it), then kills the orphan's process group before it retries the module.
    let still_running = live_process(entry_pid);
    kill_recorded_entries(&pids, root.path().to_str().unwrap());
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert!(
        !all_output(&out).contains("holds the lock"),
        "{}",
        dump(&out)
    );
    assert!(
        !still_running,
        "the next run must kill the orphaned entry (pid {entry_pid}) before its retry\n{}",
        dump(&out)
    );
    assert_eq!(
        index_packages(&root).unwrap(),
        [("quick", "2.0.0"), ("slow", "2.0.0")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    );
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
}

// ---------------------------------------------------------------------------------------------
// 4. faults other than kills

/// (a) A full disk while staging (RLIMIT_FSIZE: writing past 64 KiB fails with EFBIG).
#[test]
fn a_write_failure_while_staging_leaves_the_module_untouched_and_names_the_file() {
    let repo = UpdatesRepo::new();
    repo.add_module("big", "1.0.0");
    repo.add_module("small", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));

    repo.set_version("big", "2.0.0");
    // Compressible, so the fetched pack stays small; only the staged copy is large.
    repo.write(
        "modules/big/data/big.bin",
        &"0123456789abcdef".repeat(12 * 1024),
    );
    repo.set_version("small", "2.0.0");
    repo.commit("v2: big gets a 192 KiB file");
    let big_v1 = snap(&root.module_dir("big"));
    // Fetch and check out the new commit first (without the limit), so that the only large
    // write of the limited run is the staging copy.
    let mut cmd = updater(&root, &repo);
    cmd.arg("check");
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));

    let mut cmd = Command::new("bash");
    isolate_env(&mut cmd, root.home.path());
    cmd.env_remove("RUST_LOG")
        .env_remove("UPDATER_CRASH_AT")
        .current_dir(root.home.path())
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 64; exec "$0" "$@""#)
        .arg(updater_bin())
        .arg("--modules-path")
        .arg(root.path())
        .arg("--repo-url")
        .arg(repo.url())
        .arg("sync")
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let text = all_output(&out);
    assert!(
        code(&out) == 3 || code(&out) == 1,
        "a failed staging copy is exit 3 (or 1)\n{}",
        dump(&out)
    );
    assert!(no_panic(&out), "{}", dump(&out));
    assert!(
        text.contains("big.bin"),
        "the message must name the file that could not be written\n{}",
        dump(&out)
    );
    assert!(
        text.contains("too large")
            || text.contains("File too large")
            || text.contains("os error 27"),
        "the message should say why (EFBIG)\n{}",
        dump(&out)
    );
    assert!(
        snap(&root.module_dir("big")) == big_v1,
        "module big must be untouched byte-for-byte"
    );
    assert_eq!(
        index_packages(&root)
            .unwrap()
            .get("big")
            .map(String::as_str),
        Some("1.0.0")
    );
    let after_failure = leftovers(&root);

    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert!(snap(&root.module_dir("big")) == snap(&repo.module_dir("big")));
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    assert!(
        after_failure.is_empty(),
        "the failed run itself should clean its staging (Transaction::stage: \
         \"on error the staging is cleaned up and the journal entry removed\"): {after_failure:?}"
    );
}

/// Forwards 127.0.0.1:<port> to `upstream`, cutting each connection after `cut` bytes have
/// come back from upstream.
struct CutProxy {
    port: u16,
}

impl CutProxy {
    fn start(upstream: u16, cut: usize) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // client -> server, unlimited
                std::thread::spawn(move || {
                    let (mut from, mut to) = (c2, s2);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                // server -> client, cut after `cut` bytes
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let mut sent = 0;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let n = n.min(cut - sent);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n;
                        if sent >= cut {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        CutProxy { port }
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/{REPO_DIR_NAME}", self.port)
    }
}

/// (b) The git server dies mid-fetch, or is gone: exit 1, nothing installed changes.
#[test]
fn a_git_server_dying_mid_fetch_changes_nothing_and_the_next_run_succeeds() {
    let repo = UpdatesRepo::new();
    repo.add_module("net", "1.0.0");
    repo.commit("v1");
    let daemon = git_daemon(repo.dir.path());
    let root = InstallRoot::new();
    let out = sync_url(&root, &daemon.url_of(&repo), None);
    assert_eq!(code(&out), 0, "{}", dump(&out));

    // v2 carries 512 KiB of incompressible data, so the pack is far larger than the cut.
    let mut rng = XorShift::new(42);
    let mut blob = Vec::with_capacity(512 * 1024);
    while blob.len() < 512 * 1024 {
        blob.extend_from_slice(&rng.next().to_le_bytes());
    }
    fs::create_dir_all(repo.module_dir("net").join("data")).unwrap();
    fs::write(repo.module_dir("net").join("data/random.bin"), &blob).unwrap();
    repo.set_version("net", "2.0.0");
    repo.commit("v2");
    let before = root.snapshot();

    let proxy = CutProxy::start(daemon.port, 16 * 1024);
    let out = sync_url(&root, &proxy.url(), None);
    assert_eq!(code(&out), 1, "a cut connection is exit 1\n{}", dump(&out));
    assert!(no_panic(&out), "{}", dump(&out));
    assert!(
        all_output(&out).contains(&proxy.url()),
        "the error should name the URL\n{}",
        dump(&out)
    );
    assert!(
        root.snapshot() == before,
        "the install root changed after a failed fetch"
    );

    // The server is gone altogether.
    let dead_url = daemon.url_of(&repo);
    drop(daemon);
    let out = sync_url(&root, &dead_url, None);
    assert_eq!(code(&out), 1, "{}", dump(&out));
    assert!(no_panic(&out), "{}", dump(&out));
    assert!(root.snapshot() == before);

    let daemon = git_daemon(repo.dir.path());
    let out = sync_url(&root, &daemon.url_of(&repo), None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert!(snap(&root.module_dir("net")) == snap(&repo.module_dir("net")));
    assert_eq!(
        index_packages(&root)
            .unwrap()
            .get("net")
            .map(String::as_str),
        Some("2.0.0")
    );
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
}

/// (c) Corrupt state files: a clear error naming the file, exit 1, no panic, nothing changed.
#[test]
fn corrupt_index_journal_or_state_file_is_a_clear_error_naming_it() {
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let index = root.path().join("index.json");
    let journal = root.state_dir().join("journal.json");
    let state = root.state_dir().join("state.json");
    let good_index = fs::read(&index).unwrap();
    let good_state = fs::read(&state).unwrap();

    let cases: Vec<(&str, PathBuf, Vec<u8>)> = vec![
        ("truncated index", index.clone(), good_index[..good_index.len() / 2].to_vec()),
        ("empty index", index.clone(), Vec::new()),
        ("binary index", index.clone(), vec![0xff, 0xfe, 0x00, 0x7b]),
        ("index of the wrong shape", index.clone(), b"{\"packages\": [1, 2]}".to_vec()),
        (
            "truncated journal",
            journal.clone(),
            b"{\"modules\": {\"m\": {\"step\": \"swa".to_vec(),
        ),
        (
            "journal with a bad step",
            journal.clone(),
            b"{\"modules\": {\"m\": {\"step\": \"exploded\", \"version\": \"1.0.0\", \"had_old\": true}}}"
                .to_vec(),
        ),
        ("binary journal", journal.clone(), vec![0x80, 0x81, 0x82]),
        ("truncated state", state.clone(), good_state[..good_state.len() / 2].to_vec()),
        ("state with a bad type", state.clone(), b"{\"modules\": 3}".to_vec()),
    ];
    for (what, path, bytes) in cases {
        fs::write(&index, &good_index).unwrap();
        fs::write(&state, &good_state).unwrap();
        let _ = fs::remove_file(&journal);
        fs::write(&path, &bytes).unwrap();
        let before = snap(&root.module_dir("m"));
        let out = sync(&root, &repo, None);
        assert_eq!(code(&out), 1, "{what}: exit 1\n{}", dump(&out));
        assert!(no_panic(&out), "{what}: panicked\n{}", dump(&out));
        assert!(
            all_output(&out).contains(&path.display().to_string()),
            "{what}: the error must name {}\n{}",
            path.display(),
            dump(&out)
        );
        assert!(
            snap(&root.module_dir("m")) == before,
            "{what}: module changed"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "{what}: the bad file must be left for a human"
        );
    }
}

/// SPEC §8: exit 1 means "the run could not proceed". A corrupt state file is only read after
/// the modules were applied, so the run reports failure although it changed the machine.
#[test]
fn a_corrupt_state_file_is_refused_before_anything_is_applied() {
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    repo.set_version("m", "2.0.0");
    repo.commit("v2");
    let state = root.state_dir().join("state.json");
    fs::write(&state, "{ not json").unwrap();
    let before = root.snapshot();
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 1, "{}", dump(&out));
    assert!(
        all_output(&out).contains(&state.display().to_string()),
        "{}",
        dump(&out)
    );
    assert!(no_panic(&out));
    let changed: Vec<String> = {
        let after = root.snapshot();
        let a: BTreeSet<_> = before.iter().collect();
        let b: BTreeSet<_> = after.iter().collect();
        a.symmetric_difference(&b)
            .map(|(p, _)| p.display().to_string())
            .collect()
    };
    assert!(
        changed.is_empty(),
        "the run exited 1 (\"could not proceed\") but changed the install root: {changed:?}\n{}",
        dump(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Product bugs found by this suite (these tests fail until they are fixed; see the report).

/// SPEC §3/§7: names are validated before any path is built from them, and a corrupt journal is
/// a clear error naming it. `recover::recover` builds `.updater/staging/<name>` from the journal's
/// keys without `module::valid_name`, and `cleanup_staging` removes it: a journal entry named
/// `../../../<dir>` deletes a directory outside the install root; `../../modules/<m>` deletes an
/// installed module (which is then reinstalled, running its entry again).
#[test]
fn a_journal_entry_whose_name_is_a_path_removes_nothing_outside_staging() {
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    // A directory beside the install root (both are in the temp directory).
    let victim = tempdir("updater-crash-victim.");
    fs::write(victim.path().join("precious"), "keep me\n").unwrap();
    assert_eq!(victim.path().parent(), root.path().parent());
    let outside = format!(
        "../../../{}",
        victim.path().file_name().unwrap().to_str().unwrap()
    );
    let journal = root.state_dir().join("journal.json");
    for name in [outside.as_str(), "../../modules/m"] {
        let module_before = snap(&root.module_dir("m"));
        let runs_before = root.runs();
        fs::write(
            &journal,
            to_json(&json!({ "modules": { name: {
                "step": "staging", "version": "1.0.0", "had_old": true } } })),
        )
        .unwrap();
        let out = sync(&root, &repo, None);
        let _ = fs::remove_file(&journal);
        assert!(no_panic(&out), "{}", dump(&out));
        assert!(
            victim.path().join("precious").exists(),
            "journal entry {name:?}: recovery removed a directory outside the install root\n{}",
            dump(&out)
        );
        assert!(
            snap(&root.module_dir("m")) == module_before && root.runs() == runs_before,
            "journal entry {name:?}: recovery removed the installed module m (it was reinstalled \
             and its entry ran again)\n{}",
            dump(&out)
        );
        assert!(
            all_output(&out).contains(&journal.display().to_string()),
            "journal entry {name:?}: the bad journal should be named\n{}",
            dump(&out)
        );
    }
}

/// SPEC §7: bad input gets a clear error naming the file. A `last_commit` in state.json that is
/// not a commit id (or a state file that is a JSON array, which serde reads as a struct's
/// fields in order) fails with "bad last applied commit id ..." without naming state.json, and
/// is taken for a broken clone: the clone is deleted and cloned again before failing anyway.
#[test]
fn a_state_file_with_a_bad_last_commit_is_an_error_naming_it() {
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = sync(&root, &repo, None);
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let state = root.state_dir().join("state.json");
    for bad in [r#"{"last_commit": "zz"}"#, r#"["zz"]"#] {
        fs::write(&state, bad).unwrap();
        let out = sync(&root, &repo, None);
        assert_eq!(code(&out), 1, "{bad}\n{}", dump(&out));
        assert!(no_panic(&out), "{}", dump(&out));
        assert!(
            all_output(&out).contains(&state.display().to_string()),
            "state.json {bad}: the error must name {}\n{}",
            state.display(),
            dump(&out)
        );
        assert!(
            !all_output(&out).contains("cloning it again"),
            "state.json {bad}: a bad state file is not a broken clone\n{}",
            dump(&out)
        );
    }
}
