//! Docker fixtures for the Compose tests (`compose` module): a real `docker-registry` on
//! 127.0.0.1 (one per test process, killed with it), tiny images made locally from a static
//! busybox (`docker import`, no registry access needed), each test's own tags of them pushed to
//! that registry, and the cleanup of each test's Compose project and tags.
//!
//! These tests need the Docker engine, `docker-compose` (or `docker compose`), Debian's
//! `docker-registry` and `busybox-static` (`.ci/run` installs them). Without them a test FAILS
//! with a message saying what is missing; it never skips.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Panics with a clear message unless everything the Docker tests need is on this machine.
pub fn require_docker() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let mut missing = Vec::new();
        if !ok(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"])) {
            missing.push("a running Docker engine (`docker info` failed)");
        }
        if !ok(Command::new("docker").args(["compose", "version"]))
            && !ok(Command::new("docker-compose").arg("version"))
        {
            missing.push("Docker Compose (`docker compose` or `docker-compose`)");
        }
        if which("docker-registry").is_none() {
            missing.push("docker-registry (Debian package docker-registry)");
        }
        if busybox().is_none() {
            missing.push("a static busybox (Debian package busybox-static)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(", "))
        }
    });
    if let Err(m) = r {
        panic!("the Docker Compose tests need {m}; `.ci/run` installs them (as root)");
    }
}

fn ok(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn which(name: &str) -> Option<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
}

/// The static busybox of `busybox-static` (`/bin/busybox`).
fn busybox() -> Option<PathBuf> {
    which("busybox")
}

/// Runs a docker command, panicking with its output unless it succeeds; returns stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Like [`docker`], but a failure gives "" (for cleanup, which must not panic).
fn try_docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The registry of this test process: `127.0.0.1:<port>`.
pub fn registry() -> &'static str {
    static REGISTRY: OnceLock<String> = OnceLock::new();
    REGISTRY.get_or_init(start_registry)
}

fn start_registry() -> String {
    require_docker();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Storage of registries of earlier test processes that are gone.
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("compose-registry-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = base.join(format!("compose-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("storage")).expect("registry dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("port")
        .port();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )
    .expect("registry config");
    let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
    let bin = which("docker-registry").expect("docker-registry");
    // Started from a thread that lives as long as the process, with the parent-death signal
    // set, so the registry dies with the test process (the signal follows the spawning thread).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        tx.send(child.map(|_| ()).map_err(|e| e.to_string())).ok();
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv()
        .expect("registry thread")
        .unwrap_or_else(|e| panic!("starting docker-registry: {e}"));
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {addr}: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    addr
}

/// The local base images, made once per machine (kept between test processes): `updater-it/app:<v>` for v in `1`, `2` (both
/// healthy: they have `/healthy`; `/version` says which) and `bad` (no `/healthy`: its health
/// check fails).
pub fn base_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_docker();
        let bb = busybox().expect("busybox");
        for (tag, healthy) in [("1", true), ("2", true), ("bad", false)] {
            // Kept from an earlier test process: the same busybox, the same files.
            if ComposeFixture::has_local(&format!("updater-it/app:{tag}")) {
                continue;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().join("root");
            std::fs::create_dir_all(root.join("bin")).unwrap();
            std::fs::copy(&bb, root.join("bin/busybox")).unwrap();
            for l in ["sh", "sleep", "cat", "test", "true"] {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(l)).unwrap();
            }
            std::fs::write(root.join("version"), format!("{tag}\n")).unwrap();
            if healthy {
                std::fs::write(root.join("healthy"), "").unwrap();
            }
            let tar = dir.path().join("image.tar");
            let st = Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .expect("tar");
            assert!(st.success(), "tar failed");
            docker(&[
                "import",
                "--change",
                r#"CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]"#,
                tar.to_str().unwrap(),
                &format!("updater-it/app:{tag}"),
            ]);
        }
    });
}

/// One test's images and Compose project: `<registry>/<test>/app:<tag>` pushed to the registry,
/// and the project `<prefix>-<pid>`. Dropping it removes the project's containers and networks
/// and the local tags.
pub struct ComposeFixture {
    /// `127.0.0.1:<port>/<test>/app`, without a tag.
    pub repo: String,
    /// The Compose project name of this test.
    pub project: String,
    tags: Vec<String>,
}

impl ComposeFixture {
    /// Pushes `pushed` (tags among `1`, `2`, `bad`) as `<registry>/<test>/app:<tag>`, then
    /// removes the local copies of those in `not_local`, so using them needs a real pull.
    pub fn new(test: &str, pushed: &[&str], not_local: &[&str]) -> ComposeFixture {
        require_docker();
        base_images();
        let registry = registry();
        let test = test.replace('_', "-");
        let repo = format!("{registry}/{test}/app");
        let project = format!("uit-{test}-{}", std::process::id());
        let fixture = ComposeFixture {
            repo: repo.clone(),
            project: project.clone(),
            tags: pushed.iter().map(|t| format!("{repo}:{t}")).collect(),
        };
        fixture.cleanup();
        for t in pushed {
            let name = format!("{repo}:{t}");
            docker(&["tag", &format!("updater-it/app:{t}"), &name]);
            docker(&["push", "--quiet", &name]);
        }
        for t in not_local {
            docker(&["rmi", &format!("{repo}:{t}")]);
        }
        fixture
    }

    /// `<repo>:<tag>`.
    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repo)
    }

    /// A compose file with one service `web` running `image`, with a health check that passes
    /// when the image has `/healthy` (checked every second, unhealthy after two failures).
    pub fn compose_file(&self, image: &str) -> String {
        self.compose_file_checked_every(image, 1)
    }

    /// [`ComposeFixture::compose_file`] with the health check every `secs` seconds (the first
    /// result comes after `secs`).
    pub fn compose_file_checked_every(&self, image: &str, secs: u32) -> String {
        format!(
            "services:\n  web:\n    image: \"{image}\"\n    stop_grace_period: 2s\n    healthcheck:\n      test: [\"CMD\", \"/bin/test\", \"-f\", \"/healthy\"]\n      interval: {secs}s\n      timeout: 2s\n      retries: 2\n"
        )
    }

    /// The project's containers as `(name, image, status, health)`, sorted by name.
    pub fn containers(&self) -> Vec<(String, String, String, String)> {
        self.containers_of(&self.project)
    }

    /// [`ComposeFixture::containers`] of another project (`<project>-blue`, …).
    pub fn containers_of(&self, project: &str) -> Vec<(String, String, String, String)> {
        let ids = docker(&[
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ]);
        let mut out: Vec<(String, String, String, String)> = ids
            .split_whitespace()
            .filter_map(|id| {
                // A container that Compose removed since `ps` is gone: left out.
                let line = try_docker(&[
                    "inspect",
                    "--format",
                    "{{.Name}}|{{.Config.Image}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    id,
                ]);
                let p: Vec<&str> = line.splitn(4, '|').collect();
                (p.len() >= 3).then(|| {
                    (
                        p[0].trim_start_matches('/').to_string(),
                        p[1].to_string(),
                        p[2].to_string(),
                        p.get(3).unwrap_or(&"").to_string(),
                    )
                })
            })
            .collect();
        out.sort();
        out
    }

    /// `/version` inside the running `web` container.
    pub fn running_version(&self) -> String {
        self.running_version_of(&self.project)
    }

    /// [`ComposeFixture::running_version`] of another project.
    pub fn running_version_of(&self, project: &str) -> String {
        let ids = docker(&[
            "ps",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            "label=com.docker.compose.service=web",
        ]);
        let id = ids.split_whitespace().next().unwrap_or_else(|| {
            panic!(
                "no running web container in {}: {:?}",
                self.project,
                self.containers()
            )
        });
        docker(&["exec", id, "/bin/cat", "/version"])
    }

    /// Whether the local engine has the image `name`.
    pub fn has_local(name: &str) -> bool {
        ok(Command::new("docker").args(["image", "inspect", name]))
    }

    fn cleanup(&self) {
        for p in [
            self.project.clone(),
            format!("{}-blue", self.project),
            format!("{}-green", self.project),
        ] {
            cleanup_project(&p);
        }
    }
}

/// Removes a Compose project's containers (with their anonymous volumes) and networks.
fn cleanup_project(project: &str) {
    {
        let ids = try_docker(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(ids);
            try_docker(&args);
        }
        let nets = try_docker(&[
            "network",
            "ls",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ]);
        for n in nets.split_whitespace() {
            let _ = ok(Command::new("docker").args(["network", "rm", n]));
        }
    }
}

impl Drop for ComposeFixture {
    fn drop(&mut self) {
        self.cleanup();
        for t in &self.tags {
            let _ = ok(Command::new("docker").args(["rmi", t]));
        }
    }
}

/// The user and password of [`AuthRegistry`].
pub const AUTH_USER: &str = "u";
pub const AUTH_PASSWORD: &str = "secret-pw";
/// bcrypt (cost 4) of [`AUTH_PASSWORD`], for the registry's htpasswd file.
const AUTH_BCRYPT: &str = "$2b$04$EUViWQ.4qC72Ja.dy4KFSODnrOJKhDGmsi3ofztIEtQf2eqh1mnyy";

/// A `docker-registry` of one test that demands HTTP basic credentials (htpasswd), on
/// 127.0.0.1; killed when dropped.
pub struct AuthRegistry {
    pub addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    pub fn start() -> AuthRegistry {
        require_docker();
        let dir = tempfile::Builder::new()
            .prefix("updater-auth-registry.")
            .tempdir()
            .expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("port")
            .port();
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("{AUTH_USER}:{AUTH_BCRYPT}\n"),
        )
        .unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nauth:\n  htpasswd:\n    realm: updater-test\n    path: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display(),
                dir.path().join("htpasswd").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(which("docker-registry").expect("docker-registry"))
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        AuthRegistry {
            addr,
            child,
            _dir: dir,
        }
    }

    /// `docker login` into this registry with a Docker config directory `config_dir` (which
    /// then holds `auths.<addr>.auth`), leaving the machine's own config alone.
    pub fn login(&self, config_dir: &Path) {
        use std::io::Write;
        let mut child = Command::new("docker")
            .arg("--config")
            .arg(config_dir)
            .args([
                "login",
                "--username",
                AUTH_USER,
                "--password-stdin",
                &self.addr,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker login");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(AUTH_PASSWORD.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
