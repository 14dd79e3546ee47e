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
