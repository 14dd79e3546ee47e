//! Docker Compose modules' rules that hold before Docker is asked anything (no engine needed):
//! what the plan refuses.

use serde_json::{json, Value};

use crate::common::*;

/// A Compose module `name` in `repo` whose `metadata.compose` is `compose`, with an image on a
/// loopback port where nothing listens (a plan-time refusal never reaches it).
fn compose_module(repo: &UpdatesRepo, name: &str, compose: Value) {
    let index = json!({"metadata": {"schema_version": "1.0.0", "compose": compose}});
    repo.write(&format!("modules/{name}/index.json"), &to_json(&index));
    repo.write(
        &format!("modules/{name}/compose.yaml"),
        "services:\n  app:\n    image: \"127.0.0.1:9/none:1\"\n",
    );
}

#[test]
fn compose_modules_sharing_a_project_name_are_invalid_and_never_run() {
    let repo = UpdatesRepo::new();
    // Two modules naming the same project: one's `up --remove-orphans` would remove the other's
    // containers, and a failed first install of one would take the other down.
    compose_module(&repo, "api", json!({"project": "shop"}));
    compose_module(&repo, "web", json!({"project": "Shop"}));
    // A blue/green module runs as `<project>-blue`/`-green`: module `app-blue`'s default project.
    compose_module(&repo, "app", json!({"strategy": "blue-green"}));
    compose_module(&repo, "app-blue", json!(true));
    repo.add_module("plain", "1.0.0");
    repo.commit("colliding compose projects");
    let root = InstallRoot::new();
    let mut cmd = updater(&root, &repo);
    cmd.args(["sync", "--json"]);
    let out = run(cmd);
    let doc = json_of(&out);
    for (name, other, project) in [
        ("api", "web", "shop"),
        ("web", "api", "shop"),
        ("app", "app-blue", "app-blue"),
        ("app-blue", "app", "app-blue"),
    ] {
        assert_eq!(decision(&doc, name), "invalid", "{name}: {}", dump(&out));
        let e = error_of(&doc, name);
        assert!(
            e.contains(&format!("compose project \"{project}\"")) && e.contains(other),
            "{name}: {e}"
        );
        assert!(!root.module_dir(name).exists(), "{name} was installed");
    }
    assert_eq!(module_entry(&doc, "plain")["result"], "applied");
}

#[test]
fn a_compose_module_taking_the_project_of_an_installed_orphan_is_invalid() {
    let repo = UpdatesRepo::new();
    repo.add_module("plain", "1.0.0");
    repo.commit("plain");
    let root = InstallRoot::new();
    // `old` is installed (its containers run as project "shop") and gone from the repository.
    let old = tempfile::tempdir().unwrap();
    let index = json!({"metadata": {"schema_version": "1.0.0", "compose": {"project": "shop"}}});
    std::fs::write(old.path().join("index.json"), to_json(&index)).unwrap();
    std::fs::write(old.path().join("compose.yaml"), "services: {}\n").unwrap();
    root.install(old.path(), "old");
    compose_module(&repo, "new", json!({"project": "shop"}));
    repo.commit("new takes project shop");
    let mut cmd = updater(&root, &repo);
    cmd.args(["sync", "--json"]);
    let out = run(cmd);
    let doc = json_of(&out);
    assert_eq!(decision(&doc, "new"), "invalid", "{}", dump(&out));
    let e = error_of(&doc, "new");
    assert!(
        e.contains("compose project \"shop\"") && e.contains("old"),
        "{e}"
    );
    assert_eq!(decision(&doc, "old"), "orphaned");
    assert!(!root.module_dir("new").exists());
}

#[test]
fn a_relative_docker_config_is_the_one_of_updaters_working_directory() {
    use std::io::{BufRead, BufReader, Write};
    // A registry on 127.0.0.1 that demands basic credentials and, given them, says the tag does
    // not exist (so prepare fails at the registry check and nothing is pulled). Two requests at
    // most: the first is challenged, the second carries the credentials or never comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = String::new();
            let mut h = String::new();
            while reader.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = v.trim().to_string();
                    }
                }
                h.clear();
            }
            let answer = if auth == "Basic dTpw" {
                "404 Not Found\r\n"
            } else {
                "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\n"
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {answer}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let repo = UpdatesRepo::new();
    let index = json!({"metadata": {"schema_version": "1.0.0", "compose": true}});
    repo.write("modules/web/index.json", &to_json(&index));
    repo.write(
        "modules/web/compose.yaml",
        &format!("services:\n  app:\n    image: \"127.0.0.1:{port}/team/app:1\"\n"),
    );
    repo.commit("web");
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("dc")).unwrap();
    std::fs::write(
        cwd.path().join("dc/config.json"),
        format!(r#"{{"auths": {{"127.0.0.1:{port}": {{"auth": "dTpw"}}}}}}"#),
    )
    .unwrap();
    let root = InstallRoot::new();
    let mut cmd = updater(&root, &repo);
    cmd.current_dir(cwd.path())
        .env("DOCKER_CONFIG", "dc")
        .args(["sync", "--json"]);
    let out = run(cmd);
    let doc = json_of(&out);
    let e = error_of(&doc, "web");
    // The credentials of ./dc/config.json reached the registry: it answered the tag is missing.
    assert!(e.contains("prepare failed"), "{e}");
    let all = all_output(&out);
    assert!(all.contains("tag \"1\" does not exist"), "{}", dump(&out));
}
