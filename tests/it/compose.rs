//! Docker Compose modules against the real engine and a real registry (`common::docker`): the
//! hidden `updater compose prepare|up|rollback` steps on their own, and whole syncs of Compose
//! modules (a good update, a tag that does not exist, an unhealthy new version, a killed run).
//! Each test has its own images and project, removed when it ends; without Docker a test fails.

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
    let home = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(updater_bin());
    isolate_env(&mut cmd, home.path());
    cmd.args(["compose", step, "--dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null());
    cmd.output().expect("run updater compose")
}

#[test]
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
