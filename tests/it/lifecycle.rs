//! The per-module lifecycle (README "Lifecycle", SPEC §11): `prepare` from the staged copy
//! before the swap, health checks with retries, and the restart of the old copy (its `rollback`
//! step, else its entry) after a failed update, in the run and after a crash. Real git
//! repositories and real processes: a module `svc` stands for a service, its entry records in a
//! directory outside the install root which version "runs" (`running`) and every step that ran
//! (`events`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// The directory outside the install root where `svc`'s steps leave their marks.
struct Service {
    sys: tempfile::TempDir,
}

impl Service {
    fn new() -> Service {
        Service {
            sys: tempfile::Builder::new()
                .prefix("updater-lifecycle.")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.sys.path().join(rel)
    }

    /// The version the last entry or rollback step started.
    fn running(&self) -> String {
        std::fs::read_to_string(self.path("running"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Every step that ran, in order: `entry <from>-><to> rollback=<0|1>`, `rollback …`.
    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A step script that appends `<what> <from>-><to> rollback=<0|1>` to `events` and makes
    /// `$UPDATER_TO_VERSION` the running version.
    fn starts(&self, what: &str) -> String {
        format!(
            "#!/bin/sh\necho \"{what} $UPDATER_FROM_VERSION->$UPDATER_TO_VERSION rollback=${{UPDATER_ROLLBACK:-0}}\" >> '{e}'\n\
             echo \"$UPDATER_TO_VERSION\" > '{r}'\n",
            e = self.path("events").display(),
            r = self.path("running").display()
        )
    }

    /// A health script that fails until its `n`-th attempt (counted in `health.count`).
    fn health_passing_at(&self, n: u32) -> String {
        let c = self.path("health.count");
        format!(
            "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > '{c}'\n\
             echo \"health attempt $n\"\n[ $n -ge {n} ]\n",
            c = c.display()
        )
    }

    fn health_attempts(&self) -> u32 {
        std::fs::read_to_string(self.path("health.count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// `svc` at `version` in the repository: `update` is the service's entry (see
/// [`Service::starts`]); `meta` is merged into its `metadata`.
fn write_svc(repo: &UpdatesRepo, svc: &Service, version: &str, meta: Value) {
    let mut metadata = json!({ "schema_version": version });
    for (k, v) in meta.as_object().unwrap() {
        metadata[k] = v.clone();
    }
    repo.write(
        "modules/svc/index.json",
        &to_json(&json!({ "metadata": metadata, "configuration": {} })),
    );
    repo.write_exec("modules/svc/update", &svc.starts("entry"));
}

/// A repository with `svc` 1.0.0 (`meta1`), installed into a fresh root (its entry ran, so
/// 1.0.0 "runs"), then `svc` 2.0.0 (`meta2`, plus whatever `v2` writes) committed.
fn installed_then_v2(
    svc: &Service,
    meta1: Value,
    meta2: Value,
    v1: impl Fn(&UpdatesRepo),
    v2: impl Fn(&UpdatesRepo),
) -> (UpdatesRepo, InstallRoot) {
    let repo = UpdatesRepo::new();
    write_svc(&repo, svc, "1.0.0", meta1);
    v1(&repo);
    repo.commit("svc 1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    assert_eq!(svc.running(), "1.0.0");
    write_svc(&repo, svc, "2.0.0", meta2);
    v2(&repo);
    repo.commit("svc 2.0.0");
    (repo, root)
}

fn nothing(_: &UpdatesRepo) {}

/// The `rollback` step of a copy: a script `rollback.sh` that records itself and cwd.
fn with_rollback_step(svc: &Service) -> impl Fn(&UpdatesRepo) + '_ {
    move |repo: &UpdatesRepo| {
        let mut script = svc.starts("rollback");
        script.push_str(&format!("pwd > '{}'\n", svc.path("rollback.cwd").display()));
        repo.write_exec("modules/svc/rollback.sh", &script);
    }
}

fn no_journal_or_staging(root: &InstallRoot) {
    assert!(!root.state_dir().join("journal.json").exists());
    let staging = root.state_dir().join("staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left: {left:?}");
}

fn sync_crashing_at(root: &InstallRoot, repo: &UpdatesRepo, point: &str) {
    let mut cmd = updater(root, repo);
    cmd.env("UPDATER_CRASH_AT", point).arg("sync");
    let out = run(cmd);
    assert_eq!(
        code(&out),
        -1,
        "expected a SIGKILL at {point}\n{}",
        dump(&out)
    );
}

#[test]
fn a_failing_prepare_changes_nothing_installed_and_leaves_the_old_service_alone() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({}),
        json!({ "prepare": "prepare.sh" }),
        nothing,
        |repo| {
            repo.write_exec(
                "modules/svc/prepare.sh",
                "#!/bin/sh\necho 'image tag 2.0.0 not found' >&2\nexit 7\n",
            );
        },
    );
    let installed = snapshot(&root.module_dir("svc"), &[]);
    let events = svc.events();
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    let row = module_entry(&doc, "svc");
    assert_eq!(row["result"], "rolled_back", "{row}");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains("prepare failed") && error.contains("exit status 7"),
        "{error}"
    );
    // Nothing ran after prepare: no restart to report, the old copy and its service untouched.
    assert!(row.get("rollback").is_none(), "{row}");
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), installed);
    assert_eq!(svc.events(), events);
    assert_eq!(svc.running(), "1.0.0");
    assert_eq!(packages(&root)["svc"], "1.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn prepare_runs_from_the_staged_copy_before_the_swap() {
    let svc = Service::new();
    let out_file = svc.path("prepare.out");
    let (repo, root) = installed_then_v2(
        &svc,
        json!({}),
        json!({ "prepare": "bin/prepare" }),
        nothing,
        |repo| {
            repo.write("modules/svc/new-in-v2.txt", "new\n");
            repo.write_exec(
                "modules/svc/bin/prepare",
                &format!(
                    "#!/bin/sh\nset -e\n{{\n pwd\n echo \"$UPDATER_MODULE_DIR\"\n echo \"stage=$UPDATER_STAGE\"\n\
                     test -f new-in-v2.txt && echo new-file-here\n\
                     grep -o '\"schema_version\": \"[^\"]*\"' \"$UPDATER_MODULES_PATH/modules/svc/index.json\"\n\
                     }} > '{}'\n",
                    out_file.display()
                ),
            );
        },
    );
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(module_entry(&doc, "svc")["result"], "applied");
    let seen = std::fs::read_to_string(&out_file).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    let installed = root.module_dir("svc");
    assert_eq!(lines.len(), 5, "{seen}");
    // cwd and UPDATER_MODULE_DIR: the staged copy, not the installed directory.
    assert_eq!(lines[0], lines[1], "{seen}");
    assert_ne!(Path::new(lines[0]), installed.as_path(), "{seen}");
    assert!(
        lines[0].starts_with(root.state_dir().join("staging").to_str().unwrap()),
        "{seen}"
    );
    assert_eq!(lines[2], "stage=1");
    // It sees the new files, while the installed copy is still the old one.
    assert_eq!(lines[3], "new-file-here");
    assert_eq!(lines[4], "\"schema_version\": \"1.0.0\"");
    assert_eq!(svc.running(), "2.0.0");
    assert_eq!(packages(&root)["svc"], "2.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn a_health_check_failing_twice_passes_on_its_third_attempt_with_two_retries() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({}),
        json!({ "health": "health.sh", "health_retries": 2, "health_interval_secs": 0 }),
        nothing,
        |repo| {
            repo.write_exec("modules/svc/health.sh", &svc.health_passing_at(3));
        },
    );
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(module_entry(&doc, "svc")["result"], "applied");
    assert_eq!(svc.health_attempts(), 3);
    assert_eq!(svc.running(), "2.0.0");
    let text = stderr_of(&out);
    assert!(
        text.contains("health check attempt 2 of 3 failed"),
        "{text}"
    );
    assert_eq!(packages(&root)["svc"], "2.0.0");
}

#[test]
fn a_health_check_failing_every_attempt_restores_the_old_copy_and_runs_its_rollback_step() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({ "rollback": "rollback.sh" }),
        json!({ "health": "health.sh", "health_retries": 1, "health_interval_secs": 0 }),
        with_rollback_step(&svc),
        |repo| {
            repo.write_exec("modules/svc/health.sh", &svc.health_passing_at(99));
            repo.remove("modules/svc/rollback.sh");
        },
    );
    let old = snapshot(&root.module_dir("svc"), &[]);
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    let row = module_entry(&doc, "svc");
    assert_eq!(row["result"], "rolled_back");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("health check failed"),
        "{row}"
    );
    assert_eq!(
        row["rollback"],
        json!({"ran": true, "ok": true, "step": "rollback", "version": "1.0.0", "error": null})
    );
    assert_eq!(svc.health_attempts(), 2);
    // The old copy is back, and its rollback step ran from it, from the failed version to it.
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), old);
    assert_eq!(
        svc.events(),
        [
            "entry ->1.0.0 rollback=0",
            "entry 1.0.0->2.0.0 rollback=0",
            "rollback 2.0.0->1.0.0 rollback=1",
        ]
    );
    assert_eq!(svc.running(), "1.0.0");
    let cwd = std::fs::read_to_string(svc.path("rollback.cwd")).unwrap();
    assert_eq!(Path::new(cwd.trim()), root.module_dir("svc"));
    assert!(
        stderr_of(&out).contains("rolled back to 1.0.0; old version restarted"),
        "{}",
        dump(&out)
    );
    assert_eq!(packages(&root)["svc"], "1.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn an_old_copy_without_a_rollback_step_is_restarted_by_its_entry() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(&svc, json!({}), json!({}), nothing, |repo| {
        let mut entry = svc.starts("entry");
        entry.push_str("exit 1\n");
        repo.write_exec("modules/svc/update", &entry);
    });
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    let row = module_entry(&doc, "svc");
    assert_eq!(row["rollback"]["ok"], true, "{row}");
    assert_eq!(row["rollback"]["step"], "entry", "{row}");
    assert_eq!(
        svc.events(),
        [
            "entry ->1.0.0 rollback=0",
            "entry 1.0.0->2.0.0 rollback=0",
            "entry 2.0.0->1.0.0 rollback=1",
        ]
    );
    assert_eq!(svc.running(), "1.0.0");
}

#[test]
fn a_failing_rollback_step_is_reported_as_a_failed_restart_and_exits_3() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({ "rollback": "rollback.sh" }),
        json!({ "health": "health.sh" }),
        |repo| {
            repo.write_exec(
                "modules/svc/rollback.sh",
                "#!/bin/sh\necho 'cannot start the old version' >&2\nexit 4\n",
            );
        },
        |repo| {
            repo.write_exec("modules/svc/health.sh", "#!/bin/sh\nexit 1\n");
            repo.remove("modules/svc/rollback.sh");
        },
    );
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    let row = module_entry(&doc, "svc");
    assert_eq!(row["result"], "rolled_back");
    assert_eq!(row["rollback"]["ran"], true, "{row}");
    assert_eq!(row["rollback"]["ok"], false, "{row}");
    let error = row["rollback"]["error"].as_str().unwrap();
    assert!(
        error.contains("rollback step failed") && error.contains("exit status 4"),
        "{error}"
    );
    assert!(
        stderr_of(&out).contains("rolled back to 1.0.0; restart FAILED: "),
        "{}",
        dump(&out)
    );
    assert_eq!(packages(&root)["svc"], "1.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn a_new_module_that_fails_has_nothing_to_restart() {
    let svc = Service::new();
    let repo = UpdatesRepo::new();
    write_svc(&repo, &svc, "1.0.0", json!({ "health": "health.sh" }));
    repo.write_exec("modules/svc/health.sh", "#!/bin/sh\nexit 1\n");
    repo.commit("svc 1.0.0, unhealthy");
    let root = InstallRoot::new();
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    let row = module_entry(&doc, "svc");
    assert_eq!(
        row["rollback"],
        json!({"ran": false, "ok": true, "step": null, "version": null, "error": null})
    );
    assert!(!root.module_dir("svc").exists());
    assert_eq!(svc.events(), ["entry ->1.0.0 rollback=0"]);
    no_journal_or_staging(&root);
}

#[test]
fn a_crash_during_the_entry_is_repaired_by_restarting_the_old_copy_before_the_retry() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({ "rollback": "rollback.sh" }),
        json!({}),
        with_rollback_step(&svc),
        |repo| {
            repo.remove("modules/svc/rollback.sh");
        },
    );
    // Killed after the new entry ran, before its commit: 2.0.0 runs, uncommitted.
    sync_crashing_at(&root, &repo, "entry_done:svc");
    assert_eq!(svc.running(), "2.0.0");
    let check = run({
        let mut c = updater(&root, &repo);
        c.arg("check");
        c
    });
    assert!(
        all_output(&check).contains("rolled back and retried"),
        "{}",
        dump(&check)
    );

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    // The repair restored 1.0.0 and restarted it with its rollback step; then the retry.
    assert_eq!(
        svc.events(),
        [
            "entry ->1.0.0 rollback=0",
            "entry 1.0.0->2.0.0 rollback=0",
            "rollback 2.0.0->1.0.0 rollback=1",
            "entry 1.0.0->2.0.0 rollback=0",
        ]
    );
    assert!(
        all_output(&out).contains("rolled back to 1.0.0; old version restarted"),
        "{}",
        dump(&out)
    );
    assert_eq!(svc.running(), "2.0.0");
    assert_eq!(packages(&root)["svc"], "2.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn a_crash_while_waiting_to_retry_the_health_check_is_repaired_and_the_retry_converges() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({ "rollback": "rollback.sh" }),
        json!({ "health": "health.sh", "health_retries": 1, "health_interval_secs": 0 }),
        with_rollback_step(&svc),
        |repo| {
            // Fails its first attempt only.
            repo.write_exec("modules/svc/health.sh", &svc.health_passing_at(2));
            repo.remove("modules/svc/rollback.sh");
        },
    );
    sync_crashing_at(&root, &repo, "health_retry:svc");
    assert_eq!(svc.health_attempts(), 1);
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(
        svc.events(),
        [
            "entry ->1.0.0 rollback=0",
            "entry 1.0.0->2.0.0 rollback=0",
            "rollback 2.0.0->1.0.0 rollback=1",
            "entry 1.0.0->2.0.0 rollback=0",
        ]
    );
    assert_eq!(svc.health_attempts(), 2);
    assert_eq!(packages(&root)["svc"], "2.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn a_crash_before_the_restart_of_the_old_copy_is_finished_by_the_next_run() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({ "rollback": "rollback.sh" }),
        json!({ "health": "health.sh" }),
        with_rollback_step(&svc),
        |repo| {
            repo.write_exec("modules/svc/health.sh", "#!/bin/sh\nexit 1\n");
            repo.remove("modules/svc/rollback.sh");
        },
    );
    let old = snapshot(&root.module_dir("svc"), &[]);
    // Killed once the old copy is back, before its rollback step ran.
    sync_crashing_at(&root, &repo, "restarting:svc");
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), old);
    assert_eq!(svc.running(), "2.0.0");

    // The next run restarts 1.0.0 first, then retries 2.0.0, which fails again.
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_eq!(
        svc.events(),
        [
            "entry ->1.0.0 rollback=0",
            "entry 1.0.0->2.0.0 rollback=0",
            "rollback 2.0.0->1.0.0 rollback=1",
            "entry 1.0.0->2.0.0 rollback=0",
            "rollback 2.0.0->1.0.0 rollback=1",
        ]
    );
    assert_eq!(svc.running(), "1.0.0");
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), old);
    no_journal_or_staging(&root);
}

#[test]
fn a_crash_after_prepare_leaves_the_old_copy_and_the_next_run_converges() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({}),
        json!({ "prepare": "prepare.sh" }),
        nothing,
        |repo| {
            repo.write_exec(
                "modules/svc/prepare.sh",
                &format!(
                    "#!/bin/sh\necho prepared >> '{}'\n",
                    svc.path("events").display()
                ),
            );
        },
    );
    let old = snapshot(&root.module_dir("svc"), &[]);
    sync_crashing_at(&root, &repo, "prepared:svc");
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), old);
    assert_eq!(svc.running(), "1.0.0");
    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    // No restart: nothing had stopped the old version.
    assert_eq!(
        svc.events(),
        [
            "entry ->1.0.0 rollback=0",
            "prepared",
            "prepared",
            "entry 1.0.0->2.0.0 rollback=0",
        ]
    );
    assert_eq!(packages(&root)["svc"], "2.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn sigterm_ends_the_wait_between_health_attempts_and_rolls_back() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({}),
        json!({ "health": "health.sh", "health_retries": 5, "health_interval_secs": 3600 }),
        nothing,
        |repo| {
            repo.write_exec("modules/svc/health.sh", &svc.health_passing_at(99));
        },
    );
    let mut cmd = std::process::Command::new(updater_bin());
    isolate_env(&mut cmd, root.home.path());
    cmd.args(["sync", "--modules-path"])
        .arg(root.path())
        .arg("--repo-url")
        .arg(repo.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Once the first attempt failed, the run waits an hour for the second: stop it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while svc.health_attempts() < 1 {
        assert!(Instant::now() < deadline, "the health check never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 3, "{}", dump(&out));
    assert!(
        all_output(&out).contains("asked to stop (SIGTERM/SIGINT) before the next attempt"),
        "{}",
        dump(&out)
    );
    assert_eq!(svc.health_attempts(), 1);
    assert_eq!(svc.running(), "1.0.0");
    assert_eq!(packages(&root)["svc"], "1.0.0");
    no_journal_or_staging(&root);
}

#[test]
fn an_invalid_health_retries_makes_the_module_invalid_naming_file_and_field() {
    let svc = Service::new();
    let (repo, root) = installed_then_v2(
        &svc,
        json!({}),
        json!({ "health_retries": "many" }),
        nothing,
        nothing,
    );
    let installed = snapshot(&root.module_dir("svc"), &[]);
    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_eq!(decision(&doc, "svc"), "invalid");
    let error = error_of(&doc, "svc");
    assert!(
        error.contains("modules/svc/index.json")
            && error.contains("`metadata.health_retries` \"many\" is not an integer"),
        "{error}"
    );
    assert_eq!(snapshot(&root.module_dir("svc"), &[]), installed);
    assert_eq!(svc.events(), ["entry ->1.0.0 rollback=0"]);
}

#[test]
fn health_retries_apply_to_unchanged_modules_under_run_enabled() {
    let svc = Service::new();
    let repo = UpdatesRepo::new();
    write_svc(
        &repo,
        &svc,
        "1.0.0",
        json!({ "health": "health.sh", "health_retries": 1, "health_interval_secs": 0 }),
    );
    repo.write_exec("modules/svc/health.sh", &svc.health_passing_at(2));
    repo.commit("svc 1.0.0");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    assert_eq!(svc.health_attempts(), 2);
    std::fs::remove_file(svc.path("health.count")).unwrap();
    let (doc, out) = sync_json(&root, &repo, &["--run", "enabled"]);
    assert_code(&out, 0);
    assert_eq!(module_entry(&doc, "svc")["result"], Value::Null);
    assert_eq!(svc.health_attempts(), 2);
}
