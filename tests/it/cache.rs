//! Integration tests for the index cache (`.updater/index-cache.json`) and the no-op fast path
//! of a sync: the plan reads the commit's trees and trusts cached indexes only while their stat
//! data match, and the clone's work tree is checked before anything is installed from it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::common::*;
use serde_json::{json, Value};

fn check_json(root: &InstallRoot, repo: &UpdatesRepo) -> (Value, std::process::Output) {
    let mut cmd = updater(root, repo);
    cmd.args(["check", "--json"]);
    let out = run(cmd);
    (json_of(&out), out)
}

fn cache_file(root: &InstallRoot) -> std::path::PathBuf {
    root.state_dir().join("index-cache.json")
}

fn read_cache(root: &InstallRoot) -> Value {
    let text = fs::read_to_string(cache_file(root)).expect("the index cache exists");
    serde_json::from_str(&text).expect("the index cache is JSON")
}

#[test]
fn a_corrupt_or_missing_index_cache_is_ignored_and_rebuilt() {
    let repo = UpdatesRepo::with_modules(3);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.install_module("m01", "0.5.0");
    let (first, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert!(
        read_cache(&root)["repo"]["m02"].is_object(),
        "{}",
        dump(&out)
    );

    for damage in [Some("{\"format\": 2, \"repo\": 7"), Some("garbage"), None] {
        match damage {
            Some(text) => fs::write(cache_file(&root), text).unwrap(),
            None => fs::remove_file(cache_file(&root)).unwrap(),
        }
        let (doc, out) = check_json(&root, &repo);
        assert_code(&out, 0);
        assert_eq!(doc["modules"], first["modules"], "{}", dump(&out));
        assert_eq!(decision(&doc, "m00"), "up_to_date");
        assert_eq!(decision(&doc, "m01"), "update");
        assert_eq!(decision(&doc, "m02"), "new");
        let cache = read_cache(&root);
        assert!(
            cache["format"].is_u64(),
            "rebuilt after {damage:?}: {cache:#}"
        );
        assert!(cache["repo"]["m01"].is_object(), "rebuilt: {cache:#}");
    }
}

#[test]
fn an_installed_index_edited_in_place_with_size_and_mtime_kept_is_noticed() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    // Stat data are cached only for files changed a few seconds before the scan.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let (doc, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "up_to_date");
    let file = root.module_dir("m00").join("index.json");
    let before = fs::metadata(&file).unwrap();
    assert!(
        read_cache(&root)["installed"]["m00"].is_object(),
        "the installed index is cached: {:#}",
        read_cache(&root)
    );

    // Same size, same inode, same mtime: only the ctime tells.
    let text = fs::read_to_string(&file).unwrap();
    let edited = text.replace("1.0.0", "0.9.9");
    assert_eq!(edited.len(), text.len());
    assert_ne!(edited, text);
    fs::write(&file, edited).unwrap();
    let stamp = format!("@{}.{:09}", before.mtime(), before.mtime_nsec());
    let touched = Command::new("touch")
        .args(["-m", "-d", &stamp])
        .arg(&file)
        .status()
        .unwrap();
    assert!(touched.success());
    let after = fs::metadata(&file).unwrap();
    assert_eq!(
        (after.len(), after.ino(), after.mtime(), after.mtime_nsec()),
        (
            before.len(),
            before.ino(),
            before.mtime(),
            before.mtime_nsec()
        )
    );

    let (doc, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "update", "{}", dump(&out));
    assert_eq!(module_entry(&doc, "m00")["installed"], "0.9.9");
}

#[test]
fn a_noop_check_decides_from_the_commit_not_from_edits_in_the_clone() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let clone = root.clone_dir();
    // An edit to a tracked index, and an untracked module, with the remote tip unchanged.
    fs::write(
        clone.join("modules/m00/index.json"),
        to_json(&json!({"metadata": {"schema_version": "9.9.9"}})),
    )
    .unwrap();
    fs::create_dir_all(clone.join("modules/ghost")).unwrap();
    fs::write(
        clone.join("modules/ghost/index.json"),
        to_json(&json!({"metadata": {"schema_version": "1.0.0"}})),
    )
    .unwrap();

    let (doc, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(decision(&doc, "m00"), "up_to_date", "{}", dump(&out));
    assert_eq!(module_entry(&doc, "m00")["available"], "1.0.0");
    assert_eq!(decision(&doc, "m01"), "up_to_date");
    assert!(
        doc["modules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "ghost"),
        "an untracked module leaked into the plan: {doc:#}"
    );
}

#[test]
fn a_tampered_clone_is_repaired_before_a_module_is_installed_from_it() {
    let repo = UpdatesRepo::with_modules(2);
    repo.write("modules/m01/data.txt", "the real data\n");
    repo.commit("data");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let clone = root.clone_dir();
    // The installed m01 is gone (so the next sync installs it), and its copy in the clone was
    // edited and grew an extra file, with the remote tip unchanged.
    fs::remove_dir_all(root.module_dir("m01")).unwrap();
    fs::write(clone.join("modules/m01/data.txt"), "tampered data\n").unwrap();
    fs::write(clone.join("modules/m01/extra.sh"), "echo injected\n").unwrap();

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    let installed = root.module_dir("m01");
    assert_eq!(
        fs::read_to_string(installed.join("data.txt")).unwrap(),
        "the real data\n",
        "{}",
        dump(&out)
    );
    assert!(
        !installed.join("extra.sh").exists(),
        "an untracked file of the clone was installed"
    );
    assert_eq!(
        fs::read_to_string(clone.join("modules/m01/data.txt")).unwrap(),
        "the real data\n",
        "the clone was reset"
    );
    assert!(!clone.join("modules/m01/extra.sh").exists());
}

#[test]
fn a_noop_check_repairs_the_clone_outside_modules() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let clone = root.clone_dir();
    let original = fs::read_to_string(clone.join("index.json")).unwrap();
    fs::write(clone.join("index.json"), "garbage").unwrap();
    fs::write(clone.join("stray.txt"), "untracked").unwrap();

    let (_, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(
        fs::read_to_string(clone.join("index.json")).unwrap(),
        original,
        "{}",
        dump(&out)
    );
    assert!(
        !clone.join("stray.txt").exists(),
        "the untracked file stays"
    );
}

/// `git` run in the clone `dir` (its own objects only); panics on failure; trimmed stdout.
fn git_in(dir: &std::path::Path, args: &[&str], stdin: Option<fs::File>) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    if let Some(f) = stdin {
        cmd.stdin(f);
    }
    let out = cmd.output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_module_index_the_clone_failed_to_read_is_not_cached_as_invalid() {
    let repo = UpdatesRepo::with_modules(2);
    repo.set_version("m01", "2.0.0");
    repo.commit("m01 2.0.0");
    let root = InstallRoot::new();
    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m01"), "new", "{}", dump(&out));
    let clone = root.clone_dir();

    // Every object loose, then the blob of m01's index.json taken away (a damaged disk), with
    // no cache left to answer for it.
    let pack_dir = clone.join(".git/objects/pack");
    let aside = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(&pack_dir).unwrap() {
        let path = entry.unwrap().path();
        let moved = aside.path().join(path.file_name().unwrap());
        fs::rename(&path, &moved).unwrap();
        if moved.extension().is_some_and(|e| e == "pack") {
            git_in(
                &clone,
                &["unpack-objects", "-q"],
                Some(fs::File::open(&moved).unwrap()),
            );
        }
    }
    let blob = git_in(&clone, &["rev-parse", "HEAD:modules/m01/index.json"], None);
    let loose = clone.join(".git/objects").join(&blob[..2]).join(&blob[2..]);
    let kept = aside.path().join("blob");
    fs::rename(&loose, &kept).unwrap();
    fs::remove_file(cache_file(&root)).unwrap();

    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m01"), "invalid", "{}", dump(&out));

    // The object is back (the disk repaired, or the clone made again): the module is read.
    fs::rename(&kept, &loose).unwrap();
    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m01"), "new", "{}", dump(&out));
    assert_eq!(module_entry(&doc, "m01")["available"], "2.0.0");
}

#[test]
fn a_fifo_in_place_of_the_index_cache_does_not_hang_the_run() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let (_, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    fs::remove_file(cache_file(&root)).unwrap();
    let made = Command::new("mkfifo")
        .arg(cache_file(&root))
        .status()
        .unwrap();
    assert!(made.success());

    // A guard against a hang, not a measurement: the run takes well under a second.
    let mut cmd = updater(&root, &repo);
    cmd.args(["check", "--json"])
        .timeout(std::time::Duration::from_secs(60));
    let out = run(cmd);
    assert_code(&out, 0);
    assert_eq!(decision(&json_of(&out), "m00"), "new", "{}", dump(&out));
    assert!(
        read_cache(&root)["repo"]["m00"].is_object(),
        "the fifo is replaced by a cache"
    );
}

#[test]
fn an_edit_hidden_from_git_status_in_the_clone_is_never_installed() {
    let repo = UpdatesRepo::with_modules(1);
    repo.write("modules/m00/data.txt", "the real data\n");
    repo.commit("data");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let clone = root.clone_dir();
    // Index flags that make git's status skip a file: the edit under them must still be undone.
    for flag in ["--skip-worktree", "--assume-unchanged"] {
        fs::remove_dir_all(root.module_dir("m00")).unwrap();
        git_in(
            &clone,
            &["update-index", flag, "modules/m00/data.txt"],
            None,
        );
        fs::write(clone.join("modules/m00/data.txt"), "tampered data\n").unwrap();

        let out = sync(&root, &repo, &[]);
        assert_code(&out, 0);
        assert_eq!(
            fs::read_to_string(root.module_dir("m00").join("data.txt")).unwrap(),
            "the real data\n",
            "{flag}: {}",
            dump(&out)
        );
        assert_eq!(
            fs::read_to_string(clone.join("modules/m00/data.txt")).unwrap(),
            "the real data\n",
            "{flag}: the clone was reset"
        );
    }
}

#[test]
fn a_cached_entry_that_no_longer_parses_is_read_again_not_reported() {
    let repo = UpdatesRepo::with_modules(1);
    let root = InstallRoot::new();
    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m00"), "new", "{}", dump(&out));
    let mut cache = read_cache(&root);
    cache["repo"]["m00"]["i"]["Ok"]["v"] = json!("not a version");
    fs::write(cache_file(&root), cache.to_string()).unwrap();

    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m00"), "new", "{}", dump(&out));
    assert_eq!(module_entry(&doc, "m00")["available"], "1.0.0");
    assert_eq!(read_cache(&root)["repo"]["m00"]["i"]["Ok"]["v"], "1.0.0");
}

#[test]
fn an_unreadable_installed_index_does_not_make_every_run_rewrite_the_cache() {
    let repo = UpdatesRepo::with_modules(2);
    let root = InstallRoot::new();
    root.install_module("m00", "1.0.0");
    root.install_module("m01", "1.0.0");
    fs::write(root.module_dir("m01").join("index.json"), "garbage").unwrap();
    // Stat data are cached only for files changed a few seconds before the scan.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m00"), "up_to_date", "{}", dump(&out));
    assert!(read_cache(&root)["installed"]["m00"].is_object());
    let first = fs::metadata(cache_file(&root)).unwrap().ino();

    // Nothing changed: the cache (written atomically, so a rewrite is a new inode) stays.
    let (doc, out) = check_json(&root, &repo);
    assert_eq!(decision(&doc, "m00"), "up_to_date", "{}", dump(&out));
    assert_eq!(
        fs::metadata(cache_file(&root)).unwrap().ino(),
        first,
        "the cache was rewritten by a run that changed nothing: {}",
        dump(&out)
    );
}

#[test]
fn a_damaged_git_index_in_the_clone_is_rebuilt_before_installing() {
    let repo = UpdatesRepo::with_modules(1);
    repo.write("modules/m00/data.txt", "the real data\n");
    repo.commit("data");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    fs::remove_dir_all(root.module_dir("m00")).unwrap();
    // The clone's index (git's stat cache, not the commit) is garbage, the tip unchanged.
    fs::write(root.clone_dir().join(".git/index"), "garbage").unwrap();

    let out = sync(&root, &repo, &[]);
    assert_code(&out, 0);
    assert_eq!(
        fs::read_to_string(root.module_dir("m00").join("data.txt")).unwrap(),
        "the real data\n",
        "{}",
        dump(&out)
    );
}

#[test]
fn a_noop_check_with_line_ending_attributes_does_not_reset_the_clone() {
    let repo = UpdatesRepo::with_modules(1);
    repo.write(".gitattributes", "*.txt eol=crlf\n");
    repo.write("notes.txt", "converted on checkout\n");
    repo.commit("attributes");
    let root = InstallRoot::new();
    assert_code(&sync(&root, &repo, &[]), 0);
    let clone = root.clone_dir();
    let stamp = || {
        let m = fs::metadata(clone.join(".git/index")).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let before = stamp();

    // A reset rewrites git's index of the clone: a no-op check must not do one.
    let (_, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(stamp(), before, "{}", dump(&out));

    // An edit of that file is still seen and undone.
    fs::write(clone.join("notes.txt"), "tampered\r\n").unwrap();
    let (_, out) = check_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(
        fs::read_to_string(clone.join("notes.txt")).unwrap(),
        "converted on checkout\r\n",
        "{}",
        dump(&out)
    );
}
