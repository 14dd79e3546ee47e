//! Docker Compose modules against the real engine and a real registry (`common::docker`): the
//! hidden `updater compose prepare|up|rollback` steps on their own, and whole syncs of Compose
//! modules (a good update, a tag that does not exist, an unhealthy new version, a killed run).
//! Each test has its own images and project, removed when it ends. They need more than Rust, git
//! and python3 (a Docker engine, `docker-registry`, `busybox-static`), so a plain `cargo test`
//! lists them as ignored and `.ci/run` installs those and runs them (`cargo test --test it --
//! --ignored`); run that way without Docker, a test fails, it never skips.

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::common::docker::ComposeFixture;
use crate::common::*;

/// A module directory (index.json + compose.yaml) running `image` in `fx`'s project.
fn write_module(dir: &Path, fx: &ComposeFixture, version: &str, image: &str) {
    write_module_with(dir, fx, version, image, "recreate");
}

/// [`write_module`] with `metadata.compose.strategy`.
fn write_module_with(dir: &Path, fx: &ComposeFixture, version: &str, image: &str, strategy: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let index = json!({
        "metadata": {
            "schema_version": version,
            "compose": { "project": fx.project, "health_timeout_secs": 60, "strategy": strategy }
        }
    });
    std::fs::write(dir.join("index.json"), to_json(&index)).unwrap();
    std::fs::write(dir.join("compose.yaml"), fx.compose_file(image)).unwrap();
}

/// `updater compose <step> --dir <dir>` with a private HOME.
fn step(step: &str, dir: &Path) -> Output {
    step_with(step, dir, &[])
}

/// [`step`] with more arguments.
fn step_with(step: &str, dir: &Path, more: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(updater_bin());
    isolate_env(&mut cmd, home.path());
    cmd.args(["compose", step, "--dir"])
        .arg(dir)
        .args(more)
        .stdin(std::process::Stdio::null());
    cmd.output().expect("run updater compose")
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn compose_prepare_checks_the_registry_then_pulls_every_image() {
    let fx = ComposeFixture::new("prep-pull", &["1"], &["1"]);
    assert!(!ComposeFixture::has_local(&fx.image("1")));
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path(), &fx, "1.0.0", &fx.image("1"));
    let out = step("prepare", dir.path());
    assert_code(&out, 0);
    assert!(
        all_output(&out).contains(&format!("image {} exists in registry", fx.image("1"))),
        "{}",
        dump(&out)
    );
    assert!(ComposeFixture::has_local(&fx.image("1")), "pulled");
    assert!(fx.containers().is_empty(), "prepare starts nothing");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn compose_prepare_names_the_image_whose_tag_is_missing_and_pulls_nothing() {
    let fx = ComposeFixture::new("prep-missing", &["1"], &["1"]);
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path(), &fx, "1.0.0", &fx.image("9"));
    let out = step("prepare", dir.path());
    assert_code(&out, 1);
    let text = all_output(&out);
    assert!(text.contains(&format!("image {}", fx.image("9"))), "{text}");
    assert!(text.contains("tag \"9\" does not exist"), "{text}");
    assert!(fx.containers().is_empty());
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn compose_up_waits_for_health_and_rollback_brings_the_old_containers_back() {
    let fx = ComposeFixture::new("up-rollback", &["1", "bad"], &[]);
    let old = tempfile::tempdir().unwrap();
    let new = tempfile::tempdir().unwrap();
    write_module(old.path(), &fx, "1.0.0", &fx.image("1"));
    write_module(new.path(), &fx, "2.0.0", &fx.image("bad"));
    let out = step("up", old.path());
    assert_code(&out, 0);
    assert_eq!(fx.running_version(), "1");
    let c = fx.containers();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].2.as_str(), c[0].3.as_str()), ("running", "healthy"));

    let out = step("up", new.path());
    assert_code(&out, 1);
    assert!(all_output(&out).contains("is unhealthy"), "{}", dump(&out));
    assert_eq!(fx.containers()[0].1, fx.image("bad"));

    let out = step("rollback", old.path());
    assert_code(&out, 0);
    let c = fx.containers();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, fx.image("1"));
    assert_eq!((c[0].2.as_str(), c[0].3.as_str()), ("running", "healthy"));
    assert_eq!(fx.running_version(), "1");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn compose_blue_green_starts_the_new_beside_the_old_and_never_stops_the_old_on_failure() {
    let fx = ComposeFixture::new("blue-green", &["1", "2", "bad"], &[]);
    let (blue, green) = (
        format!("{}-blue", fx.project),
        format!("{}-green", fx.project),
    );
    let v1 = tempfile::tempdir().unwrap();
    let v2 = tempfile::tempdir().unwrap();
    let v3 = tempfile::tempdir().unwrap();
    write_module_with(v1.path(), &fx, "1.0.0", &fx.image("1"), "blue-green");
    write_module_with(v2.path(), &fx, "2.0.0", &fx.image("2"), "blue-green");
    write_module_with(v3.path(), &fx, "3.0.0", &fx.image("bad"), "blue-green");

    assert_code(&step("up", v1.path()), 0);
    assert_eq!(fx.running_version_of(&blue), "1");
    assert!(fx.containers_of(&green).is_empty());

    let out = step("up", v2.path());
    assert_code(&out, 0);
    assert_eq!(fx.running_version_of(&green), "2");
    assert!(
        fx.containers_of(&blue).is_empty(),
        "the old color is stopped once the new one is healthy"
    );

    let green_before = fx.containers_of(&green);
    let out = step("up", v3.path());
    assert_code(&out, 1);
    assert!(all_output(&out).contains("is unhealthy"), "{}", dump(&out));
    assert!(
        fx.containers_of(&blue).is_empty(),
        "the failed new color is taken down"
    );
    assert_eq!(
        fx.containers_of(&green),
        green_before,
        "the old color never stopped"
    );
    assert_eq!(fx.running_version_of(&green), "2");

    assert_code(&step("rollback", v2.path()), 0);
    assert_eq!(
        fx.containers_of(&green),
        green_before,
        "rollback keeps what runs"
    );
}

/// Writes module `web` (index.json at `version`, compose.yaml `compose`) into the repository
/// and commits it.
fn commit_web(repo: &UpdatesRepo, fx: &ComposeFixture, version: &str, compose: &str) {
    commit_web_with(repo, fx, version, compose, "recreate");
}

/// [`commit_web`] with `metadata.compose.strategy`.
fn commit_web_with(
    repo: &UpdatesRepo,
    fx: &ComposeFixture,
    version: &str,
    compose: &str,
    strategy: &str,
) {
    let index = json!({
        "metadata": {
            "schema_version": version,
            "compose": { "project": fx.project, "health_timeout_secs": 60, "strategy": strategy }
        }
    });
    repo.write("modules/web/index.json", &to_json(&index));
    repo.write("modules/web/compose.yaml", compose);
    repo.commit(&format!("web {version}"));
}

/// `sync --json` with room for pulls and health waits.
fn sync_json(root: &InstallRoot, repo: &UpdatesRepo) -> (serde_json::Value, Output) {
    let mut cmd = updater(root, repo);
    cmd.timeout(std::time::Duration::from_secs(300))
        .args(["sync", "--json"]);
    let out = run(cmd);
    (json_of(&out), out)
}

/// A repository whose module `web` 1.0.0 runs `<repo>:1`, synced once: web 1.0.0 runs.
fn installed_v1(fx: &ComposeFixture) -> (UpdatesRepo, InstallRoot) {
    let repo = UpdatesRepo::new();
    commit_web(&repo, fx, "1.0.0", &fx.compose_file(&fx.image("1")));
    let root = InstallRoot::new();
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(
        module_entry(&doc, "web")["result"],
        "applied",
        "{}",
        dump(&out)
    );
    assert_eq!(fx.running_version(), "1");
    (repo, root)
}

fn installed_version(root: &InstallRoot) -> serde_json::Value {
    root.read_index()["packages"]["web"].clone()
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_of_a_compose_module_checks_pulls_and_runs_the_new_image() {
    let fx = ComposeFixture::new("sync-good", &["1", "2"], &["1", "2"]);
    let (repo, root) = installed_v1(&fx);
    let old = fx.containers();
    commit_web(&repo, &fx, "2.0.0", &fx.compose_file(&fx.image("2")));
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(
        module_entry(&doc, "web")["result"],
        "applied",
        "{}",
        dump(&out)
    );
    let text = all_output(&out);
    assert!(
        text.contains(&format!("image {} exists in registry", fx.image("2"))),
        "{text}"
    );
    assert!(
        ComposeFixture::has_local(&fx.image("2")),
        "pulled in prepare"
    );
    let now = fx.containers();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].1, fx.image("2"));
    assert_eq!(
        (now[0].2.as_str(), now[0].3.as_str()),
        ("running", "healthy")
    );
    assert_ne!(now, old);
    assert_eq!(fx.running_version(), "2");
    assert_eq!(installed_version(&root), "2.0.0");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_of_a_compose_module_whose_tag_does_not_exist_changes_nothing_and_names_the_image() {
    let fx = ComposeFixture::new("sync-missing", &["1"], &[]);
    let (repo, root) = installed_v1(&fx);
    let id_before = docker_ids(&fx);
    let installed = snapshot(&root.module_dir("web"), &[]);
    commit_web(&repo, &fx, "2.0.0", &fx.compose_file(&fx.image("404")));
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 3);
    let row = module_entry(&doc, "web");
    assert_eq!(row["result"], "rolled_back", "{row}");
    assert!(
        row["error"].as_str().unwrap().contains("prepare failed"),
        "{row}"
    );
    assert!(
        row.get("rollback").is_none(),
        "nothing ran after prepare: {row}"
    );
    let text = all_output(&out);
    assert!(
        text.contains(&format!("image {}", fx.image("404"))) && text.contains("does not exist"),
        "the output names the image: {text}"
    );
    assert_eq!(docker_ids(&fx), id_before, "the same containers still run");
    assert_eq!(fx.running_version(), "1");
    assert_eq!(snapshot(&root.module_dir("web"), &[]), installed);
    assert_eq!(installed_version(&root), "1.0.0");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_of_an_unhealthy_compose_update_brings_the_old_containers_back() {
    let fx = ComposeFixture::new("sync-unhealthy", &["1", "bad"], &[]);
    let (repo, root) = installed_v1(&fx);
    commit_web(&repo, &fx, "2.0.0", &fx.compose_file(&fx.image("bad")));
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 3);
    let row = module_entry(&doc, "web");
    assert_eq!(row["result"], "rolled_back", "{row}");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("entry point failed"),
        "{row}"
    );
    assert_eq!(row["rollback"]["ran"], true, "{row}");
    assert_eq!(row["rollback"]["ok"], true, "{row}");
    assert_eq!(row["rollback"]["step"], "rollback", "{row}");
    assert_eq!(row["rollback"]["version"], "1.0.0", "{row}");
    assert!(all_output(&out).contains("is unhealthy"), "{}", dump(&out));
    let c = fx.containers();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, fx.image("1"), "the old image runs again");
    assert_eq!((c[0].2.as_str(), c[0].3.as_str()), ("running", "healthy"));
    assert_eq!(fx.running_version(), "1");
    assert_eq!(installed_version(&root), "1.0.0");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_killed_during_a_compose_entry_is_repaired_and_converges() {
    let fx = ComposeFixture::new("sync-killed", &["1", "2"], &[]);
    let (repo, root) = installed_v1(&fx);
    // A health check every 3 s keeps the entry waiting after `up` has replaced the container.
    commit_web(
        &repo,
        &fx,
        "2.0.0",
        &fx.compose_file_checked_every(&fx.image("2"), 3),
    );
    let mut cmd = std::process::Command::new(updater_bin());
    isolate_env(&mut cmd, root.home.path());
    cmd.arg("--modules-path")
        .arg(root.path())
        .arg("--repo-url")
        .arg(repo.url())
        .arg("sync")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start updater");
    // Killed once the entry has started the new container (an event, not a delay).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if fx.containers().iter().any(|c| c.1 == fx.image("2")) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "updater ended before the new container started"
        );
        assert!(std::time::Instant::now() < deadline, "no new container");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(installed_version(&root), "1.0.0", "not committed");
    assert!(
        root.state_dir().join("journal.json").exists(),
        "a journal was left"
    );

    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(
        module_entry(&doc, "web")["result"],
        "applied",
        "{}",
        dump(&out)
    );
    let c = fx.containers();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, fx.image("2"));
    assert_eq!((c[0].2.as_str(), c[0].3.as_str()), ("running", "healthy"));
    assert_eq!(fx.running_version(), "2");
    assert_eq!(installed_version(&root), "2.0.0");
    assert!(!root.state_dir().join("journal.json").exists());
}

/// The ids of the project's containers.
fn docker_ids(fx: &ComposeFixture) -> String {
    crate::common::docker::docker(&[
        "ps",
        "--all",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={}", fx.project),
    ])
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_of_a_failed_first_compose_install_leaves_nothing_running() {
    let fx = ComposeFixture::new("sync-first-bad", &["bad"], &[]);
    let repo = UpdatesRepo::new();
    commit_web(&repo, &fx, "1.0.0", &fx.compose_file(&fx.image("bad")));
    let root = InstallRoot::new();
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 3);
    let row = module_entry(&doc, "web");
    assert_eq!(row["result"], "rolled_back", "{row}");
    assert_eq!(row["rollback"]["ran"], false, "{row}");
    assert!(all_output(&out).contains("is unhealthy"), "{}", dump(&out));
    assert!(
        fx.containers().is_empty(),
        "the failed install was taken down: {:?}",
        fx.containers()
    );
    assert!(installed_version(&root).is_null());
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_of_a_blue_green_compose_module_switches_colors_and_keeps_the_old_on_failure() {
    let fx = ComposeFixture::new("sync-blue-green", &["1", "2", "bad"], &[]);
    let (blue, green) = (
        format!("{}-blue", fx.project),
        format!("{}-green", fx.project),
    );
    let repo = UpdatesRepo::new();
    let root = InstallRoot::new();
    commit_web_with(
        &repo,
        &fx,
        "1.0.0",
        &fx.compose_file(&fx.image("1")),
        "blue-green",
    );
    let (_, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(fx.running_version_of(&blue), "1");

    commit_web_with(
        &repo,
        &fx,
        "2.0.0",
        &fx.compose_file(&fx.image("2")),
        "blue-green",
    );
    let (_, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(fx.running_version_of(&green), "2");
    assert!(
        fx.containers_of(&blue).is_empty(),
        "blue stopped after green was healthy"
    );

    let green_before = fx.containers_of(&green);
    commit_web_with(
        &repo,
        &fx,
        "3.0.0",
        &fx.compose_file(&fx.image("bad")),
        "blue-green",
    );
    let (doc, out) = sync_json(&root, &repo);
    assert_code(&out, 3);
    let row = module_entry(&doc, "web");
    assert_eq!(row["result"], "rolled_back", "{row}");
    assert_eq!(row["rollback"]["ok"], true, "{row}");
    assert_eq!(
        fx.containers_of(&green),
        green_before,
        "green never stopped"
    );
    assert!(
        fx.containers_of(&blue).is_empty(),
        "the failed blue was taken down"
    );
    assert_eq!(installed_version(&root), "2.0.0");
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn compose_prepare_uses_the_docker_config_credentials_of_a_registry_that_demands_them() {
    use crate::common::docker::{base_images, docker, AuthRegistry};
    base_images();
    let registry = AuthRegistry::start();
    let config = tempfile::tempdir().unwrap();
    registry.login(config.path());
    let config_dir = config.path().to_str().unwrap();
    let image = format!("{}/auth/app:1", registry.addr);
    docker(&["tag", "updater-it/app:1", &image]);
    docker(&["--config", config_dir, "push", "--quiet", &image]);
    docker(&["rmi", &image]);
    let fx = ComposeFixture::new("prep-auth", &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path(), &fx, "1.0.0", &image);

    let out = step("prepare", dir.path());
    assert_code(&out, 1);
    assert!(
        all_output(&out).contains("asks for credentials and the Docker config file has none"),
        "{}",
        dump(&out)
    );
    assert!(!ComposeFixture::has_local(&image));

    let out = step_with("prepare", dir.path(), &["--docker-config", config_dir]);
    assert_code(&out, 0);
    assert!(
        ComposeFixture::has_local(&image),
        "pulled with the credentials"
    );
    docker(&["rmi", &image]);
}

#[test]
#[ignore = "needs Docker, docker-registry and busybox-static; .ci/run installs them and runs these (cargo test --test it -- --ignored)"]
fn sync_that_changes_the_strategy_leaves_only_the_new_strategys_project_running() {
    let fx = ComposeFixture::new("sync-switch-strategy", &["1", "2"], &[]);
    let blue = format!("{}-blue", fx.project);
    let repo = UpdatesRepo::new();
    commit_web(&repo, &fx, "1.0.0", &fx.compose_file(&fx.image("1")));
    let root = InstallRoot::new();
    let (_, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(fx.running_version(), "1");

    // recreate → blue-green: the new version runs as blue, the plain project is taken down.
    let v2 = fx.compose_file(&fx.image("2"));
    commit_web_with(&repo, &fx, "2.0.0", &v2, "blue-green");
    let (_, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(fx.running_version_of(&blue), "2");
    assert!(
        fx.containers().is_empty(),
        "{:?}\n{}",
        fx.containers(),
        dump(&out)
    );

    // blue-green → recreate (back to image 1): the plain project runs, no color is left.
    commit_web(&repo, &fx, "3.0.0", &fx.compose_file(&fx.image("1")));
    let (_, out) = sync_json(&root, &repo);
    assert_code(&out, 0);
    assert_eq!(fx.running_version(), "1");
    assert!(fx.containers_of(&blue).is_empty(), "{}", dump(&out));
}
