//! Regressions of the 2026-11 reliability review (working paths, names, recovery, clones, modes,
//! git deadline, leftover processes, messages): one test per guarantee, each against the real
//! binary, real git repositories and real processes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
use serde_json::json;

/// Runs `cmd` with `args` appended.
fn go(mut cmd: assert_cmd::Command, args: &[&str]) -> std::process::Output {
    cmd.args(args);
    run(cmd)
}

fn version_of(root: &InstallRoot, name: &str) -> Option<String> {
    let text = fs::read_to_string(root.module_dir(name).join("index.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["metadata"]["schema_version"].as_str().map(str::to_string)
}

fn quarantined(root: &InstallRoot) -> Vec<String> {
    let q = root.state_dir().join("quarantine");
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(&q) {
        for e in rd.flatten() {
            out.push(fs::read_to_string(e.path().join("reason.txt")).unwrap_or_default());
        }
    }
    out
}

fn quarantine_dir(root: &InstallRoot) -> std::path::PathBuf {
    let q = root.state_dir().join("quarantine");
    fs::read_dir(&q).unwrap().next().unwrap().unwrap().path()
}

/// #1: module `a`'s working paths were `staging/a.paths`, the staging directory of module
/// `a.paths`: when `a` committed first, its clean-up deleted `a.paths`'s old copy, and `a.paths`'s
/// failing entry then lost the module. Each module now has one working directory of its own.
#[test]
fn a_module_named_like_another_modules_working_path_keeps_its_old_copy_on_failure() {
    let repo = UpdatesRepo::new();
    repo.add_module("a", "1.0.0").add_module("a.paths", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = go(updater(&root, &repo), &["--jobs", "2", "sync"]);
    assert_code(&out, 0);
    // v2: `a` succeeds; `a.paths` waits until `a` has committed (its old copy becomes
    // backup/a), then fails, so its rollback needs its own old copy after `a`'s clean-up.
    repo.set_version("a", "2.0.0")
        .set_version("a.paths", "2.0.0");
    repo.write_exec(
        "modules/a.paths/update",
        "#!/bin/sh\ni=0\nwhile [ ! -d \"$UPDATER_MODULES_PATH/.updater/backup/a\" ] && [ $i -lt 600 ]; do\n  sleep 0.05; i=$((i+1))\ndone\nexit 1\n",
    );
    repo.commit("v2");
    let out = go(updater(&root, &repo), &["--jobs", "2", "sync"]);
    assert_code(&out, 3);
    assert_eq!(
        version_of(&root, "a").as_deref(),
        Some("2.0.0"),
        "{}",
        dump(&out)
    );
    assert_eq!(
        version_of(&root, "a.paths").as_deref(),
        Some("1.0.0"),
        "a.paths must be back at its old copy\n{}",
        dump(&out)
    );
    assert!(root.module_dir("a.paths").join("update").exists());
    assert!(!root.state_dir().join("journal.json").exists());
}

/// #2: a module name of 200 bytes is not a module (SPEC §3: at most 128 bytes): reported and
/// skipped; the other modules install and nothing is left journaled.
#[test]
fn a_module_name_longer_than_128_bytes_is_reported_and_skipped() {
    let long = "n".repeat(200);
    let repo = UpdatesRepo::new();
    repo.add_module("ok", "1.0.0").add_module(&long, "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    let out = go(updater(&root, &repo), &["sync"]);
    assert_ne!(code(&out), 1, "{}", dump(&out));
    assert_eq!(version_of(&root, "ok").as_deref(), Some("1.0.0"));
    assert!(!root.module_dir(&long).exists(), "{}", dump(&out));
    assert!(all_output(&out).contains(&long[..100]), "{}", dump(&out));
    assert!(!root.state_dir().join("journal.json").exists());
    let again = go(updater(&root, &repo), &["sync"]);
    assert_eq!(code(&again), code(&out), "{}", dump(&again));
}

/// #2: a journal left by the previous version for a 250-byte name (whose commit could never
/// finish: its suffixed working path exceeded NAME_MAX) no longer wedges the install root: the
/// entry is set aside in `.updater/quarantine/`, the run goes on, and doctor reports it.
#[test]
fn a_journal_entry_the_previous_version_could_not_finish_is_set_aside_not_retried_forever() {
    let long = "L".repeat(250);
    let repo = UpdatesRepo::new();
    repo.add_module("ok", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    fs::create_dir_all(root.module_dir(&long)).unwrap();
    fs::write(root.module_dir(&long).join("index.json"), "{}").unwrap();
    let staging = root.state_dir().join("staging");
    fs::create_dir_all(staging.join(&long)).unwrap();
    fs::write(staging.join(&long).join("old"), "the old copy").unwrap();
    let journal = json!({ "modules": { long.clone(): {
        "step": "committed", "version": "2.0.0", "new_ino": 1, "had_old": true } } });
    fs::write(root.state_dir().join("journal.json"), to_json(&journal)).unwrap();

    // The installed directory with the long name stays, reported as invalid (exit 3, not 1).
    let out = go(updater(&root, &repo), &["sync"]);
    assert_code(&out, 3);
    assert!(!root.state_dir().join("journal.json").exists());
    let q = quarantined(&root);
    assert_eq!(q.len(), 1, "{q:?}\n{}", dump(&out));
    assert!(q[0].contains(&long), "{}", q[0]);
    assert_eq!(version_of(&root, "ok").as_deref(), Some("1.0.0"));
    assert_eq!(
        fs::read_to_string(quarantine_dir(&root).join("tree/old")).unwrap(),
        "the old copy"
    );
    let again = go(updater(&root, &repo), &["sync"]);
    assert_code(&again, 3);
    assert_eq!(quarantined(&root).len(), 1);
    let doctor = go(updater(&root, &repo), &["doctor"]);
    assert_code(&doctor, 1);
    assert!(
        stdout_of(&doctor).contains("quarantine"),
        "{}",
        dump(&doctor)
    );
}

/// #2: a repair that fails (here: a `backup_paths` parent replaced by a file) is set aside once,
/// the module is retried in the same run, and every later run works.
#[test]
fn a_repair_that_cannot_complete_is_quarantined_and_the_module_is_retried() {
    let sys = tempfile::tempdir().unwrap();
    let conf_dir = sys.path().join("d");
    fs::create_dir_all(&conf_dir).unwrap();
    fs::write(conf_dir.join("conf"), "original").unwrap();
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    repo.set_version("m", "2.0.0");
    let mut index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(repo.module_dir("m").join("index.json")).unwrap())
            .unwrap();
    index["configuration"]["backup_paths"] = json!([conf_dir.join("conf")]);
    repo.write("modules/m/index.json", &to_json(&index));
    repo.commit("v2");
    let crashed = {
        let mut c = updater(&root, &repo);
        c.env("UPDATER_CRASH_AT", "entry_started:m");
        go(c, &["sync"])
    };
    assert_eq!(code(&crashed), -1, "{}", dump(&crashed));
    assert!(root.state_dir().join("journal.json").exists());
    // The snapshot can no longer be put back: its parent directory is now a file.
    fs::remove_dir_all(&conf_dir).unwrap();
    fs::write(&conf_dir, "not a directory").unwrap();

    let out = go(updater(&root, &repo), &["sync"]);
    assert_code(&out, 0);
    assert!(all_output(&out).contains("quarantine"), "{}", dump(&out));
    assert_eq!(version_of(&root, "m").as_deref(), Some("2.0.0"));
    assert!(!root.state_dir().join("journal.json").exists());
    let q = quarantined(&root);
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].contains("module: m"), "{}", q[0]);
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    let doctor = go(updater(&root, &repo), &["doctor"]);
    assert!(
        stdout_of(&doctor).contains("quarantine"),
        "{}",
        dump(&doctor)
    );
}

#[allow(dead_code)]
fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file under `dir` (including `.git/`) with its bytes.
fn tree_bytes(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// #3: `--local-repo` pointed at a person's own checkout (another origin, local commits, an
/// untracked file) is refused with a clear message, and not one byte of it changes.
#[test]
fn a_local_repo_updater_did_not_create_is_refused_and_left_untouched() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let home = tempfile::tempdir().unwrap();
    let mine = home.path().join("my-work");
    let out = std::process::Command::new("git")
        .args(["clone", "-q", &repo.url()])
        .arg(&mine)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    fs::write(mine.join("unsaved-notes.txt"), "my work").unwrap();
    git_in(
        &mine,
        &[
            "remote",
            "set-url",
            "origin",
            "https://example.org/mine.git",
        ],
    );
    let before = tree_bytes(&mine);
    let local = mine.to_str().unwrap();
    for cmd in ["check", "sync"] {
        let out = go(updater(&root, &repo), &["--local-repo", local, cmd]);
        assert_code(&out, 1);
        assert!(
            all_output(&out).contains("not a clone updater made"),
            "{}",
            dump(&out)
        );
        assert_eq!(tree_bytes(&mine), before, "{cmd} changed the checkout");
    }
    let doctor = go(updater(&root, &repo), &["--local-repo", local, "doctor"]);
    assert!(
        stdout_of(&doctor).contains("not a clone updater made"),
        "{}",
        dump(&doctor)
    );
}

/// #3: a clone updater made at `--local-repo` carries its mark and keeps working; so does the
/// default clone of the previous version (unmarked), which is marked on its next sync.
#[test]
fn clones_updater_made_keep_working_and_an_unmarked_default_clone_is_adopted() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let clone = elsewhere.path().join("clone");
    let local = clone.to_str().unwrap();
    assert_code(
        &go(updater(&root, &repo), &["--local-repo", local, "sync"]),
        0,
    );
    assert_eq!(
        git_in(&clone, &["config", "--local", "updater.managed"]),
        "true"
    );
    assert_code(
        &go(updater(&root, &repo), &["--local-repo", local, "sync"]),
        0,
    );

    let root2 = InstallRoot::new();
    assert_code(&go(updater(&root2, &repo), &["sync"]), 0);
    git_in(
        &root2.clone_dir(),
        &["config", "--local", "--unset", "updater.managed"],
    );
    assert_code(&go(updater(&root2, &repo), &["sync"]), 0);
    assert_eq!(
        git_in(
            &root2.clone_dir(),
            &["config", "--local", "updater.managed"]
        ),
        "true"
    );
}

/// #4: the default clone without `.git`, or replaced by a file, is updater's own: it is cloned
/// again and the sync goes on (before, every sync failed while doctor advised a sync).
#[test]
fn a_broken_default_clone_is_cloned_again() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    fs::remove_dir_all(root.clone_dir().join(".git")).unwrap();
    let doctor = go(updater(&root, &repo), &["doctor"]);
    assert!(
        stdout_of(&doctor).contains("clones it again"),
        "{}",
        dump(&doctor)
    );
    let out = go(updater(&root, &repo), &["sync"]);
    assert_code(&out, 0);
    assert!(root.clone_dir().join(".git").is_dir());

    fs::remove_dir_all(root.clone_dir()).unwrap();
    fs::write(root.clone_dir(), "not a clone").unwrap();
    let out = go(updater(&root, &repo), &["check"]);
    assert_code(&out, 0);
    assert!(root.clone_dir().join(".git").is_dir());
    assert_code(&go(updater(&root, &repo), &["doctor"]), 0);
}

#[test]
fn lock_files_a_killed_git_operation_left_in_the_clone_do_not_block_the_next_sync() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    let git_dir = root.clone_dir().join(".git");
    let stale = [
        git_dir.join("index.lock"),
        git_dir.join("shallow.lock"),
        git_dir.join("refs").join("heads").join("stale.lock"),
    ];
    for p in &stale {
        fs::write(p, "").unwrap();
    }
    repo.add_module("later", "1.0.0");
    repo.commit("a new module");
    let out = go(updater(&root, &repo), &["sync"]);
    assert_code(&out, 0);
    let text = format!(
        "{}{}",
        stdout_of(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("cloning it again"), "{}", dump(&out));
    assert!(
        text.contains("left by an interrupted git operation"),
        "{}",
        dump(&out)
    );
    for p in &stale {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    assert!(root.module_dir("later").is_dir(), "{}", dump(&out));
}

/// Paths under `dir` (directories and files, not symlinks) that other users may write to.
fn group_or_world_writable(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            continue;
        }
        if m.permissions().mode() & 0o022 != 0 {
            bad.push(format!(
                "{} {:o}",
                p.display(),
                m.permissions().mode() & 0o7777
            ));
        }
        if m.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    bad
}

/// #10: under umask 000 every directory and file updater (and libgit2, and the entry points it
/// runs) creates is still 0755/0644-like, so the next run, as root, accepts what the first made.
#[test]
fn under_umask_000_nothing_created_is_group_or_world_writable_and_the_next_run_works() {
    let repo = UpdatesRepo::with_modules(2);
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("install");
    let umask_run = |cmd: &str| {
        let mut c = std::process::Command::new("sh");
        isolate_env(&mut c, home.path());
        c.arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(updater_bin())
            .arg("--modules-path")
            .arg(&root)
            .arg("--repo-url")
            .arg(repo.url())
            .arg(cmd)
            .env_remove("UPDATER_CRASH_AT")
            .current_dir(home.path());
        c.output().unwrap()
    };
    let out = umask_run("sync");
    assert_code(&out, 0);
    let bad = group_or_world_writable(&root);
    assert!(bad.is_empty(), "created writable by others: {bad:#?}");
    assert!(root.join(".updater/repo/.git").is_dir());
    let again = umask_run("sync");
    assert_code(&again, 0);
    assert_code(&umask_run("check"), 0);
}

/// #19: a `--repo-url` path that does not exist says so (not "unsupported URL protocol").
#[test]
fn a_repo_url_path_that_does_not_exist_is_named_as_missing() {
    let root = InstallRoot::new();
    let missing = root.home.path().join("no-such-repo");
    let mut cmd = updater_at(&root);
    cmd.arg("--repo-url").arg(&missing);
    let out = go(cmd, &["check"]);
    assert_code(&out, 1);
    let text = all_output(&out);
    assert!(
        text.contains(&format!("{} does not exist", missing.display())),
        "{}",
        dump(&out)
    );
    assert!(!text.contains("unsupported URL protocol"), "{}", dump(&out));
}

/// #19: an empty repository (no commits) says it has no commits, not "no error; code=NotFound".
#[test]
fn an_empty_repository_is_reported_as_having_no_commits() {
    let root = InstallRoot::new();
    let empty = root.home.path().join("empty.git");
    let out = std::process::Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(out.status.success());
    for extra in [&[][..], &["--branch", "main"][..]] {
        let mut cmd = updater_at(&root);
        cmd.arg("--repo-url").arg(&empty).args(extra);
        let out = go(cmd, &["check"]);
        assert_code(&out, 1);
        let text = all_output(&out);
        assert!(text.contains("has no commits"), "{}", dump(&out));
        assert!(!text.contains("code=NotFound"), "{}", dump(&out));
    }
}

/// #19: when an atomic write fails (here: RLIMIT_FSIZE, as on a full disk), the error names the
/// file being written (`modules/m/index.json`), not only its temporary name.
#[test]
fn a_failed_atomic_write_names_its_destination() {
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.set_metadata("m", "description", json!("x".repeat(2000)));
    repo.commit("v1");
    let root = InstallRoot::new();
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    let before = fs::read(root.module_dir("m").join("index.json")).unwrap();
    let mut c = std::process::Command::new("sh");
    isolate_env(&mut c, root.home.path());
    c.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
        .arg(updater_bin())
        .arg("--modules-path")
        .arg(root.path())
        .args(["disable", "m"])
        .current_dir(root.home.path());
    let out = c.output().unwrap();
    assert_ne!(code(&out), 0, "{}", dump(&out));
    let want = root.module_dir("m").join("index.json");
    assert!(
        all_output(&out).contains(&want.display().to_string()),
        "{}",
        dump(&out)
    );
    assert_eq!(
        fs::read(&want).unwrap(),
        before,
        "the file must be untouched"
    );
}

/// #19: an installed module without index.json is reported as missing it (not as a refused
/// symlink).
#[test]
fn a_missing_module_index_is_reported_as_missing() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    fs::remove_file(root.module_dir("m00").join("index.json")).unwrap();
    let out = go(updater(&root, &repo), &["doctor"]);
    let text = all_output(&out);
    assert!(text.contains("index.json is missing"), "{}", dump(&out));
    assert!(!text.contains("symlink"), "{}", dump(&out));
}

/// #11: a git server that answers one byte at a time never ends a check by itself; the total
/// deadline (`--git-timeout`) does: exit 1, a message naming the remote, and the lock is free
/// for the next run.
#[test]
fn a_trickling_git_server_is_given_up_after_the_git_timeout_and_the_lock_is_released() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        while !stop2.load(Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf);
            // A ref advertisement that never ends: one byte at a time.
            let advert = b"00ff0000000000000000000000000000000000000000 HEAD\0";
            let mut i = 0;
            while !stop2.load(Ordering::SeqCst) {
                if conn.write_all(&advert[i % advert.len()..][..1]).is_err() {
                    break;
                }
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    });
    let root = InstallRoot::new();
    let url = format!("git://127.0.0.1:{port}/updates.git");
    let mut cmd = updater_at(&root);
    cmd.args(["--repo-url", &url, "--git-timeout", "2", "check"]);
    let out = run(cmd);
    stop.store(true, Ordering::SeqCst);
    assert_code(&out, 1);
    let text = all_output(&out);
    assert!(
        text.contains(&url) && text.contains("--git-timeout"),
        "{}",
        dump(&out)
    );
    server.join().unwrap();
    // The lock is free: a check against a real repository runs at once.
    let repo = UpdatesRepo::with_modules(1);
    assert_code(&go(updater(&root, &repo), &["check"]), 0);
}

fn alive_not_zombie(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let rest = &s[s.rfind(')').unwrap() + 1..];
            !matches!(rest.split_whitespace().next(), Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// #12: updater SIGKILLed (outside systemd) while an entry runs leaves the entry running; the next
/// run kills that process group, and waits for it to be gone, before it retries the module.
#[test]
fn an_entry_left_running_by_a_sigkilled_run_is_killed_before_its_retry() {
    let sys = tempfile::tempdir().unwrap();
    let s = sys.path().display().to_string();
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.write_exec(
        "modules/m/update",
        &format!(
            "#!/bin/sh\nif [ -f '{s}/pid' ]; then\n  old=$(cat '{s}/pid')\n  \
             st=$(cut -d' ' -f3 /proc/$old/stat 2>/dev/null)\n  \
             if [ -n \"$st\" ] && [ \"$st\" != Z ]; then echo overlap > '{s}/overlap'; fi\n  \
             echo retried > '{s}/retried'\n  exit 0\nfi\n\
             echo $$ > '{s}/pid.tmp' && mv '{s}/pid.tmp' '{s}/pid'\nexec sleep 1000\n"
        ),
    );
    repo.commit("v1");
    let root = InstallRoot::new();
    let mut cmd = std::process::Command::new(updater_bin());
    isolate_env(&mut cmd, root.home.path());
    cmd.arg("--modules-path")
        .arg(root.path())
        .args(["--repo-url", &repo.url(), "sync"])
        .env_remove("UPDATER_CRASH_AT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .current_dir(root.home.path());
    let mut child = cmd.spawn().unwrap();
    // Wait for the events: the entry recorded its pid, and updater recorded its process group
    // (just after the spawn; on a loaded machine the entry may start first). Bounded only as a
    // safety net.
    let pid_file = sys.path().join("pid");
    let record = root.path().join(".updater").join("running");
    for _ in 0..6000 {
        let recorded = fs::read_dir(&record).is_ok_and(|mut d| d.next().is_some());
        if (pid_file.exists() && recorded) || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        alive_not_zombie(pid),
        "the entry should outlive the SIGKILLed run"
    );
    let doctor = go(updater(&root, &repo), &["doctor"]);
    assert!(
        stdout_of(&doctor).contains("left running by an interrupted run"),
        "{}",
        dump(&doctor)
    );

    let out = go(updater(&root, &repo), &["sync"]);
    let survived = alive_not_zombie(pid);
    if survived {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert_code(&out, 0);
    assert!(
        !survived,
        "the old entry (pid {pid}) still runs\n{}",
        dump(&out)
    );
    assert!(sys.path().join("retried").exists(), "{}", dump(&out));
    assert!(
        !sys.path().join("overlap").exists(),
        "the retry overlapped the old entry"
    );
    assert_eq!(version_of(&root, "m").as_deref(), Some("1.0.0"));
}

/// #1: a journal written by the previous version (working paths `staging/<name>`,
/// `<name>.paths`, no `per_module_dir`) is still repaired: the old copy goes back in place.
#[test]
fn a_journal_from_the_previous_version_is_repaired_at_its_old_working_paths() {
    use std::os::unix::fs::MetadataExt;
    let repo = UpdatesRepo::new();
    repo.add_module("m", "1.0.0");
    repo.commit("v1");
    let root = InstallRoot::new();
    assert_code(&go(updater(&root, &repo), &["sync"]), 0);
    let before = fs::read(root.module_dir("m").join("index.json")).unwrap();
    // What the previous version left after swapping in 2.0.0 and dying: the new copy installed,
    // the old one at staging/m.
    let staging = root.state_dir().join("staging");
    fs::create_dir_all(staging.join("new")).unwrap();
    fs::write(
        staging.join("new/index.json"),
        to_json(&json!({"metadata": {"schema_version": "2.0.0"}})),
    )
    .unwrap();
    let new_ino = fs::metadata(staging.join("new")).unwrap().ino();
    fs::rename(root.module_dir("m"), staging.join("m")).unwrap();
    fs::rename(staging.join("new"), root.module_dir("m")).unwrap();
    let journal = json!({ "modules": { "m": {
        "step": "swapped", "version": "2.0.0", "new_ino": new_ino, "had_old": true } } });
    fs::write(root.state_dir().join("journal.json"), to_json(&journal)).unwrap();

    let out = go(updater(&root, &repo), &["sync"]);
    assert_code(&out, 0);
    assert_eq!(
        fs::read(root.module_dir("m").join("index.json")).unwrap(),
        before
    );
    assert!(!root.state_dir().join("journal.json").exists());
    assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    assert!(quarantined(&root).is_empty());
}
