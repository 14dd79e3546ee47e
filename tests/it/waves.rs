//! Integration tests for applying a wave (the modules of one priority) at once: staged and made
//! durable together, each swapped in just before its own entry runs, committed together
//! (SPEC §7; `apply::ApplyWaves`, `Transaction::seal_wave` and `commit_wave`).

use std::fs;

use crate::common::*;
use serde_json::json;

fn result_of(doc: &serde_json::Value, name: &str) -> String {
    module_entry(doc, name)["result"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_dependants_backup_paths_are_snapshotted_after_its_dependency_ran() {
    let sys = tempfile::Builder::new()
        .prefix("updater-test-sys.")
        .tempdir()
        .unwrap();
    let shared = sys.path().join("shared.txt");
    fs::write(&shared, "original\n").unwrap();
    let s = shared.display();
    let repo = UpdatesRepo::new();
    repo.add_module("base", "1.0.0");
    repo.write_exec(
        "modules/base/update",
        &format!("#!/bin/sh\necho 'from base' > '{s}'\n"),
    );
    repo.write(
        "modules/app/index.json",
        &to_json(&json!({
            "metadata": { "schema_version": "1.0.0", "depends_on": ["base"] },
            "configuration": { "backup_paths": [s.to_string()] },
        })),
    );
    repo.write_exec(
        "modules/app/update",
        &format!("#!/bin/sh\necho 'app was here' >> '{s}'\nexit 1\n"),
    );
    repo.commit("app depends on base, shares a path with it, and fails");
    let root = InstallRoot::new();

    let (doc, out) = sync_json(&root, &repo, &[]);
    assert_code(&out, 3);
    assert_eq!(result_of(&doc, "base"), "applied", "{}", dump(&out));
    assert_eq!(result_of(&doc, "app"), "rolled_back", "{}", dump(&out));
    // The dependency's change stays: the dependant's snapshot was taken after it ran.
    assert_eq!(fs::read_to_string(&shared).unwrap(), "from base\n");
}

#[test]
fn a_wave_keeps_each_old_copy_as_its_backup_and_leaves_no_journal_or_staging() {
    let repo = UpdatesRepo::new();
    let root = InstallRoot::new();
    let names = ["w1", "w2", "w3", "w4"];
    for n in names {
        repo.add_module(n, "2.0.0");
        root.install_module(n, "1.0.0");
        root.write(&format!("modules/{n}/old-marker"), n);
    }
    repo.write_exec("modules/w3/update", "#!/bin/sh\nexit 4\n");
    repo.commit("four modules at 2.0.0, w3 fails");

    let (doc, out) = sync_json(&root, &repo, &["-j", "2"]);
    assert_code(&out, 3);
    for n in names {
        let marker = root.module_dir(n).join("old-marker");
        let backup = root.state_dir().join("backup").join(n).join("old-marker");
        if n == "w3" {
            assert_eq!(result_of(&doc, n), "rolled_back", "{}", dump(&out));
            assert!(marker.exists(), "w3 keeps its old copy");
            assert!(!backup.exists(), "w3 has no new backup");
        } else {
            assert_eq!(result_of(&doc, n), "applied", "{}", dump(&out));
            assert!(!marker.exists(), "{n} is the new copy");
            assert!(backup.exists(), "{n}'s old copy is its backup");
        }
    }
    assert!(!root.state_dir().join("journal.json").exists());
    let staging: Vec<_> = fs::read_dir(root.state_dir().join("staging"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging left: {staging:?}");
}
