//! The module-management verbs the admin UI drives (SPEC §2, §10): their output formats, their
//! edits of the installed module index (atomic, every other key kept in order), and their
//! refusals. Every test runs the real binary against a real install root (and, for
//! `set-branch`, a real git repository).

use std::fs;

use serde_json::{json, Value};

use crate::common::*;

/// Writes an installed module's index.json as given (and records it in the global index).
fn install_with_index(root: &InstallRoot, name: &str, index: Value) {
    root.install_module(name, "1.0.0");
    fs::write(
        root.module_dir(name).join("index.json"),
        to_json(&index).as_bytes(),
    )
    .unwrap();
}

fn index_text(root: &InstallRoot, name: &str) -> String {
    fs::read_to_string(root.module_dir(name).join("index.json")).unwrap()
}

fn run_at(root: &InstallRoot, args: &[&str]) -> std::process::Output {
    let mut c = updater_at(root);
    c.args(args);
    run(c)
}

/// The key paths of a JSON value in document order (to prove that an edit keeps the order).
fn key_order(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            let p = format!("{prefix}/{k}");
            out.push(p.clone());
            key_order(v, &p, out);
        }
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    key_order(v, "", &mut out);
    out
}

fn website_index() -> Value {
    json!({
        "metadata": { "schema_version": "1.2.0", "description": "The web UI", "zz": 1 },
        "config": {
            "components": {
                "frontend": { "enabled": true, "description": "React app" },
                "backend": { "enabled": false }
            },
            "target_paths": {
                "components": { "frontend": { "enabled": true, "path": "/var/www" } }
            },
            "repository": { "url": "https://example.invalid/website.git", "branch": "main" }
        },
        "after": [1, 2, 3]
    })
}

// --- list ----------------------------------------------------------------------------------------

#[test]
fn list_prints_the_upstream_rows_sorted_by_name_with_totals() {
    let root = InstallRoot::new();
    install_with_index(
        &root,
        "zeta",
        json!({"metadata": {"schema_version": "2.0", "enabled": false, "description": "Last one"}}),
    );
    install_with_index(
        &root,
        "alpha",
        json!({"metadata": {"schema_version": "1.0.0"},
               "repo": {"url": "https://example.invalid/a.git", "branch": "dev", "default_branch": "master"}}),
    );
    install_with_index(&root, "website", website_index());
    // An old copy upstream leaves behind is never a module.
    install_with_index(
        &root,
        "website.backup",
        json!({"metadata": {"schema_version": "0.9.0"}}),
    );

    for args in [
        &["list"][..],
        &["--list-modules"][..],
        &["--all-status"][..],
    ] {
        let out = run_at(&root, args);
        assert_code(&out, 0);
        let text = stdout_of(&out);
        for line in text.lines() {
            assert!(is_log_line(line), "{args:?}: {line:?}");
        }
        assert_eq!(
            log_messages(&text),
            [
                "Available modules:",
                "alpha ENABLED v1.0.0 BRANCH dev master No description",
                "website ENABLED v1.2.0 BRANCH main main The web UI",
                "zeta DISABLED v2.0.0 Last one",
                "Total: 3 modules (2 enabled, 1 disabled)",
            ],
            "{args:?}"
        );
    }
    // Read-only: no lock or state was needed, nothing changed.
    let out = run_at(&root, &["list", "--json"]);
    assert_code(&out, 0);
    let doc = json_of(&out);
    assert_eq!(doc["total"], 3);
    assert_eq!(doc["modules"][1]["branch"], "main");
}

#[test]
fn list_of_an_empty_root_has_zero_totals() {
    let root = InstallRoot::new();
    let out = run_at(&root, &["--list-modules"]);
    assert_code(&out, 0);
    let messages = log_messages(&stdout_of(&out));
    assert_eq!(
        messages.last().map(String::as_str),
        Some("Total: 0 modules (0 enabled, 0 disabled)")
    );
}

// --- module status -----------------------------------------------------------------------------

#[test]
fn module_status_shows_the_modules_own_state_in_capitals_only() {
    let root = InstallRoot::new();
    let mut index = website_index();
    index["metadata"]["enabled"] = json!(false);
    install_with_index(&root, "website", index);
    let out = run_at(&root, &["--module-status", "website"]);
    assert_code(&out, 0);
    let text = stdout_of(&out);
    let messages = log_messages(&text);
    assert!(messages.contains(&"Status: DISABLED".to_string()), "{text}");
    // The admin UI reads "ENABLED" anywhere in the output as "enabled": an enabled component of
    // a disabled module must not say it in capitals.
    assert!(!text.contains("ENABLED"), "{text}");
    assert!(
        text.contains("frontend") && text.contains("enabled"),
        "{text}"
    );

    let out = run_at(&root, &["--module-status", "nope"]);
    assert_code(&out, 1);
    assert!(all_output(&out).contains("Module 'nope' not found"));
}

// --- enable / disable ----------------------------------------------------------------------------

#[test]
fn enable_and_disable_print_the_upstream_success_lines_and_keep_every_key() {
    let root = InstallRoot::new();
    install_with_index(&root, "website", website_index());
    let before: Value = serde_json::from_str(&index_text(&root, "website")).unwrap();
    for (args, enabled, line) in [
        (
            &["--disable-module", "website"][..],
            false,
            "✓ Module 'website' disabled",
        ),
        (
            &["--enable-module", "website"][..],
            true,
            "✓ Module 'website' enabled",
        ),
        (
            &["disable", "website"][..],
            false,
            "✓ Module 'website' disabled",
        ),
        (
            &["enable", "website"][..],
            true,
            "✓ Module 'website' enabled",
        ),
    ] {
        let out = run_at(&root, args);
        assert_code(&out, 0);
        assert!(
            log_messages(&stdout_of(&out)).contains(&line.to_string()),
            "{args:?}: {}",
            dump(&out)
        );
        let after: Value = serde_json::from_str(&index_text(&root, "website")).unwrap();
        assert_eq!(after["metadata"]["enabled"], enabled);
        let mut expected = before.clone();
        expected["metadata"]["enabled"] = json!(enabled);
        assert_eq!(after, expected, "{args:?}: only metadata.enabled changed");
        let mut k = keys(&before);
        k.push("/metadata/enabled".into());
        let mut got = keys(&after);
        got.retain(|p| p != "/metadata/enabled");
        k.retain(|p| p != "/metadata/enabled");
        assert_eq!(got, k, "{args:?}: key order kept");
    }
}

// --- components ----------------------------------------------------------------------------------

#[test]
fn component_toggle_flips_it_wherever_declared_and_nothing_else() {
    let root = InstallRoot::new();
    install_with_index(&root, "website", website_index());
    let before: Value = serde_json::from_str(&index_text(&root, "website")).unwrap();

    let out = run_at(&root, &["--disable-component", "website", "frontend"]);
    assert_code(&out, 0);
    assert!(
        log_messages(&stdout_of(&out))
            .contains(&"✓ Component 'frontend' disabled in module 'website'".to_string()),
        "{}",
        dump(&out)
    );
    let after: Value = serde_json::from_str(&index_text(&root, "website")).unwrap();
    let mut expected = before.clone();
    expected["config"]["components"]["frontend"]["enabled"] = json!(false);
    expected["config"]["target_paths"]["components"]["frontend"]["enabled"] = json!(false);
    assert_eq!(after, expected);
    assert_eq!(keys(&after), keys(&before), "key order kept");

    let out = run_at(&root, &["component", "enable", "website", "backend"]);
    assert_code(&out, 0);
    assert!(stdout_of(&out).contains("✓ Component 'backend' enabled in module 'website'"));
    let after: Value = serde_json::from_str(&index_text(&root, "website")).unwrap();
    assert_eq!(after["config"]["components"]["backend"]["enabled"], true);

    let out = run_at(&root, &["--enable-component", "website", "frontend"]);
    assert_code(&out, 0);
    let after: Value = serde_json::from_str(&index_text(&root, "website")).unwrap();
    assert_eq!(after["config"]["components"]["frontend"]["enabled"], true);
    assert_eq!(
        after["config"]["target_paths"]["components"]["frontend"]["enabled"],
        true
    );
}

#[test]
fn unknown_component_or_module_is_refused_and_changes_nothing() {
    let root = InstallRoot::new();
    install_with_index(&root, "website", website_index());
    let before = root.snapshot();
    for args in [
        &["--enable-component", "website", "nope"][..],
        &["--enable-component", "ghost", "frontend"][..],
        &["--enable-component", "../website", "frontend"][..],
        &["--disable-module", "ghost"][..],
    ] {
        let out = run_at(&root, args);
        assert_code(&out, 1);
        assert!(!stdout_of(&out).contains('✓'), "{args:?}: {}", dump(&out));
        assert_eq!(before, root.snapshot(), "{args:?}");
    }
    let out = run_at(&root, &["--enable-component", "website", "nope"]);
    assert!(all_output(&out).contains("Component 'nope' not found in module 'website'"));
}

#[test]
fn management_verbs_wait_for_no_one_and_refuse_while_a_run_holds_the_lock() {
    let root = InstallRoot::new();
    install_with_index(&root, "website", website_index());
    let before = root.snapshot();
    let holder = hold_lock(&root, 60);
    for args in [
        &["--disable-component", "website", "frontend"][..],
        &["--disable-module", "website"][..],
    ] {
        let out = run_at(&root, args);
        assert_code(&out, 1);
        assert!(
            all_output(&out).contains(&holder.pid().to_string()),
            "{args:?}: names the holder\n{}",
            dump(&out)
        );
        assert_eq!(before, root.snapshot(), "{args:?}");
    }
}

// --- set-branch ----------------------------------------------------------------------------------

/// A module whose own source is a real local git repository with `master` and `develop`.
fn root_with_sourced_module(at_config: bool) -> (InstallRoot, UpdatesRepo) {
    let source = UpdatesRepo::new();
    source.branch("develop");
    let root = InstallRoot::new();
    let mut index = json!({"metadata": {"schema_version": "1.0.0"}});
    let src = json!({"url": source.url(), "branch": "master"});
    if at_config {
        index["config"] = json!({"repository": src, "other": true});
    } else {
        index["repo"] = src;
    }
    install_with_index(&root, "sbin", index);
    (root, source)
}

#[test]
fn set_branch_checks_the_remote_and_records_the_branch() {
    for at_config in [false, true] {
        let (root, _source) = root_with_sourced_module(at_config);
        let before: Value = serde_json::from_str(&index_text(&root, "sbin")).unwrap();
        let out = run_at(&root, &["--set-module-branch", "sbin", "develop"]);
        assert_code(&out, 0);
        assert!(
            log_messages(&stdout_of(&out))
                .contains(&"Module 'sbin' branch set to 'develop'".to_string()),
            "{}",
            dump(&out)
        );
        let after: Value = serde_json::from_str(&index_text(&root, "sbin")).unwrap();
        let src = if at_config {
            &after["config"]["repository"]
        } else {
            &after["repo"]
        };
        assert_eq!(src["branch"], "develop");
        assert_eq!(src["default_branch"], "master", "the branch it replaced");
        assert_eq!(after["metadata"], before["metadata"]);
        // The list shows it.
        let out = run_at(&root, &["list"]);
        assert!(
            stdout_of(&out).contains("sbin ENABLED v1.0.0 BRANCH develop master"),
            "{}",
            dump(&out)
        );
        // The subcommand spelling too, back to master.
        let out = run_at(&root, &["set-branch", "sbin", "master"]);
        assert_code(&out, 0);
        assert!(stdout_of(&out).contains("Module 'sbin' branch set to 'master'"));
    }
}

#[test]
fn set_branch_refuses_a_missing_branch_a_bad_name_or_no_url_and_changes_nothing() {
    let (root, _source) = root_with_sourced_module(false);
    install_with_index(
        &root,
        "plain",
        json!({"metadata": {"schema_version": "1.0.0"}}),
    );
    let before = root.snapshot();
    for (args, needle) in [
        (
            &["--set-module-branch", "sbin", "nope"][..],
            "Branch 'nope' not found",
        ),
        (
            &["--set-module-branch", "sbin", "a..b"][..],
            "Invalid branch name",
        ),
        (
            &["--set-module-branch", "sbin", "feature/x"][..],
            "Invalid branch name",
        ),
        (
            &["--set-module-branch", "sbin", "dev\nx"][..],
            "Invalid branch name",
        ),
        (
            &["--set-module-branch", "sbin", "dev\u{1b}[2J"][..],
            "Invalid branch name",
        ),
        (
            &["--set-module-branch", "../sbin", "develop"][..],
            "Invalid module name",
        ),
        (
            &["--set-module-branch", "sb..in", "develop"][..],
            "Invalid module name",
        ),
        (
            &["--set-module-branch", "plain", "develop"][..],
            "has no repository URL",
        ),
        (
            &["--set-module-branch", "ghost", "develop"][..],
            "Module 'ghost' not found",
        ),
    ] {
        let out = run_at(&root, args);
        assert_code(&out, 1);
        assert!(
            all_output(&out).contains(needle),
            "{args:?}: {}",
            dump(&out)
        );
        assert!(!all_output(&out).contains("branch set to"), "{args:?}");
        assert_eq!(before, root.snapshot(), "{args:?}");
        for line in stdout_of(&out).lines() {
            assert!(is_log_line(line), "{args:?}: {line:?}");
        }
    }
}

// --- status after a crash ------------------------------------------------------------------------

#[test]
fn status_after_a_kill_names_the_pending_repair_instead_of_applied() {
    let repo = UpdatesRepo::new();
    repo.add_module("alpha", "1.0.0");
    repo.commit("1.0.0");
    let root = InstallRoot::new();
    run({
        let mut c = updater(&root, &repo);
        c.arg("sync");
        c
    });
    repo.set_version("alpha", "2.0.0");
    repo.commit("2.0.0");
    let out = run({
        let mut c = updater(&root, &repo);
        c.arg("sync").env("UPDATER_CRASH_AT", "swapped:alpha");
        c
    });
    assert_ne!(code(&out), 0, "the crash point fired\n{}", dump(&out));

    let out = run_at(&root, &["status"]);
    assert_code(&out, 0);
    let text = stdout_of(&out);
    assert!(text.contains("Pending repair"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("alpha"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("pending repair"), "{row}");
    assert!(!row.contains("applied"), "{row}");

    let out = run_at(&root, &["status", "--json"]);
    let doc = json_of(&out);
    assert_eq!(
        doc["modules"][0]["last_result"],
        "interrupted (pending repair)"
    );
    assert!(!doc["pending_repairs"].as_array().unwrap().is_empty());
}

/// `git::remote_has_branch` reads no working directory itself: a relative `repo.url` in the
/// module's index is opened from the run's working directory, as before.
#[test]
fn set_branch_with_a_relative_repository_path_asks_the_repository_under_the_working_directory() {
    let source = UpdatesRepo::new();
    source.branch("develop");
    let root = InstallRoot::new();
    let parent = source.path().parent().expect("repo has a parent");
    let name = source.path().file_name().expect("repo has a name");
    let index = json!({"metadata": {"schema_version": "1.0.0"},
        "repo": {"url": name.to_str().expect("utf-8 name"), "branch": "master"}});
    install_with_index(&root, "sbin", index);
    let mut c = updater_at(&root);
    c.args(["set-branch", "sbin", "develop"])
        .current_dir(parent);
    let out = run(c);
    assert_code(&out, 0);
    let after: Value = serde_json::from_str(&index_text(&root, "sbin")).unwrap();
    assert_eq!(after["repo"]["branch"], "develop");
    // A branch the repository lacks is still refused (the remote was really asked).
    let mut c = updater_at(&root);
    c.args(["set-branch", "sbin", "nope"]).current_dir(parent);
    let out = run(c);
    assert_ne!(code(&out), 0, "{}", dump(&out));
    assert!(
        all_output(&out).contains("Branch 'nope' not found"),
        "{}",
        dump(&out)
    );
}
