//! The registry HTTP API v2 client: does an image's tag (or digest) exist? One `HEAD
//! /v2/<name>/manifests/<reference>` with the manifest media types Docker accepts; on a `401` it
//! follows the challenge: `Bearer` gets a token from the challenge's realm (anonymously, or with
//! the Docker config file's basic credentials, as Docker Hub's anonymous pull flow does) and asks
//! again; `Basic` asks again with the credentials. Plain HTTP for a registry on this machine
//! (as Docker treats 127.0.0.0/8), HTTPS everywhere else, verified against the system's roots.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Body};

use super::challenge::Challenge;
use super::credentials::DockerConfig;
use super::image::ImageRef;

/// The manifest media types asked for (single-platform and multi-platform, Docker and OCI).
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A registry client with the machine's Docker credentials.
pub struct Registry<'a> {
    agent: Agent,
    config: &'a DockerConfig,
}

impl<'a> Registry<'a> {
    /// A client whose every request (each manifest check, each token) ends within `timeout`.
    pub fn new(config: &'a DockerConfig, timeout: Duration) -> Registry<'a> {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            // The environment is read by `commands::settings` only: no proxy variables here.
            .proxy(None)
            .user_agent(concat!("updater/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::NativeTls)
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .build()
            .new_agent();
        Registry { agent, config }
    }

    /// Ok when the registry has `image`'s tag or digest; else an error that names the image and
    /// says why (no such tag, access refused, registry unreachable, …).
    pub fn check(&self, image: &ImageRef) -> Result<()> {
        self.check_inner(image)
            .with_context(|| format!("image {}", image.original))
    }

    fn check_inner(&self, image: &ImageRef) -> Result<()> {
        let scheme = if image.is_loopback() { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            image.api_host(),
            image.repository,
            image.reference
        );
        let first = self.head(&url, None)?;
        let status = first.status().as_u16();
        let answer = if status == 401 {
            let header = first
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("{url}: 401 without a WWW-Authenticate challenge"))?;
            let challenge = Challenge::parse(header)?;
            let auth = match challenge.scheme.as_str() {
                "bearer" => format!("Bearer {}", self.token(image, &challenge)?),
                "basic" => match self.config.basic_for(&image.registry) {
                    Some(b) => format!("Basic {b}"),
                    None => bail!(
                        "registry {} asks for credentials and the Docker config file has none for it",
                        image.registry
                    ),
                },
                other => bail!("{url}: unsupported authentication scheme {other:?}"),
            };
            self.head(&url, Some(&auth))?
        } else {
            first
        };
        match answer.status().as_u16() {
            200 => Ok(()),
            404 => bail!(
                "{} {:?} does not exist in registry {} ({url} answered 404)",
                if image.reference.contains(':') { "digest" } else { "tag" },
                image.reference,
                image.registry
            ),
            401 | 403 => bail!(
                "registry {} refused access to {} (HTTP {}): the repository does not exist or needs credentials",
                image.registry,
                image.repository,
                answer.status().as_u16()
            ),
            other => bail!("{url} answered HTTP {other}"),
        }
    }

    fn head(&self, url: &str, auth: Option<&str>) -> Result<Response<Body>> {
        let mut req = self.agent.head(url).header("Accept", MANIFEST_ACCEPT);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.call().with_context(|| format!("asking {url}"))
    }

    /// A bearer token from the challenge's realm, for the challenge's scope (else pull access to
    /// the image's repository), with basic credentials when the Docker config file has some.
    fn token(&self, image: &ImageRef, challenge: &Challenge) -> Result<String> {
        let realm = challenge
            .param("realm")
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
            .ok_or_else(|| anyhow!("the bearer challenge names no http(s) realm"))?;
        let default_scope = format!("repository:{}:pull", image.repository);
        let mut req = self
            .agent
            .get(realm)
            .query("scope", challenge.param("scope").unwrap_or(&default_scope));
        if let Some(service) = challenge.param("service") {
            req = req.query("service", service);
        }
        if let Some(b) = self.config.basic_for(&image.registry) {
            // The password would cross the network in clear text: only to this machine.
            if let Some(rest) = realm.strip_prefix("http://") {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = authority.rsplit('@').next().unwrap_or("");
                if !super::image::is_loopback_host(host) {
                    bail!(
                        "the bearer challenge of registry {} names realm {realm}: refusing to send its credentials there over plain HTTP",
                        image.registry
                    );
                }
            }
            req = req.header("Authorization", &format!("Basic {b}"));
        }
        let mut resp = req
            .call()
            .with_context(|| format!("asking {realm} for a token"))?;
        let status = resp.status().as_u16();
        if status != 200 {
            bail!("token service {realm} answered HTTP {status}");
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .with_context(|| format!("reading the answer of {realm}"))?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("token service {realm}: the answer is not JSON"))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("token service {realm}: no token in the answer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A registry on 127.0.0.1 that serves `/v2/team/app/manifests/1` only with the bearer
    /// token its own `/token` endpoint hands out for `scope=repository:team/app:pull`; with
    /// `basic` set the token endpoint also demands that basic credential. Serves `requests`
    /// connections, then stops; returns the port and the log of request lines.
    fn registry(
        requests: usize,
        basic: Option<&'static str>,
    ) -> (u16, Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let handle = std::thread::spawn(move || {
            for _ in 0..requests {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            auth = v.trim().to_string();
                        }
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(format!(
                    "{} {path} [{auth}]",
                    line.split(' ').next().unwrap()
                ));
                let (status, extra, body) = if path.starts_with("/token?") {
                    let scope_ok = path.contains("scope=repository%3Ateam%2Fapp%3Apull")
                        || path.contains("scope=repository:team/app:pull");
                    let basic_ok = basic.is_none_or(|b| auth == format!("Basic {b}"));
                    if scope_ok && path.contains("service=test-registry") && basic_ok {
                        (
                            "200 OK",
                            String::new(),
                            r#"{"token":"tok-123"}"#.to_string(),
                        )
                    } else {
                        ("401 Unauthorized", String::new(), String::new())
                    }
                } else if auth != "Bearer tok-123" {
                    (
                        "401 Unauthorized",
                        format!(
                            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:team/app:pull\"\r\n"
                        ),
                        String::new(),
                    )
                } else if path == "/v2/team/app/manifests/1" {
                    ("200 OK", String::new(), String::new())
                } else {
                    ("404 Not Found", String::new(), String::new())
                };
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    if line.starts_with("HEAD") { "" } else { &body }
                );
            }
        });
        (port, log, handle)
    }

    #[test]
    fn anonymous_bearer_token_flow_reaches_the_manifest() {
        let (port, log, handle) = registry(3, None);
        let cfg = DockerConfig::default();
        let reg = Registry::new(&cfg, Duration::from_secs(10));
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
        reg.check(&image).unwrap();
        handle.join().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log[0], "HEAD /v2/team/app/manifests/1 []");
        assert!(log[1].starts_with("GET /token?"), "{log:?}");
        assert_eq!(log[2], "HEAD /v2/team/app/manifests/1 [Bearer tok-123]");
    }

    #[test]
    fn missing_tag_after_the_token_flow_names_the_image_and_tag() {
        let (port, _log, handle) = registry(3, None);
        let cfg = DockerConfig::default();
        let reg = Registry::new(&cfg, Duration::from_secs(10));
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/team/app:9")).unwrap();
        let e = format!("{:#}", reg.check(&image).unwrap_err());
        handle.join().unwrap();
        assert!(
            e.contains(&format!("image 127.0.0.1:{port}/team/app:9")),
            "{e}"
        );
        assert!(e.contains("tag \"9\" does not exist"), "{e}");
    }

    #[test]
    fn token_request_carries_docker_config_credentials() {
        let (port, log, handle) = registry(3, Some("dTpw"));
        let cfg = DockerConfig::parse(&format!(
            r#"{{"auths": {{"127.0.0.1:{port}": {{"auth": "dTpw"}}}}}}"#
        ))
        .unwrap();
        let reg = Registry::new(&cfg, Duration::from_secs(10));
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
        reg.check(&image).unwrap();
        handle.join().unwrap();
        assert!(log.lock().unwrap()[1].ends_with("[Basic dTpw]"));
    }

    #[test]
    fn token_refused_without_credentials_is_an_error() {
        let (port, _log, handle) = registry(2, Some("dTpw"));
        let cfg = DockerConfig::default();
        let reg = Registry::new(&cfg, Duration::from_secs(10));
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
        let e = format!("{:#}", reg.check(&image).unwrap_err());
        handle.join().unwrap();
        assert!(e.contains("answered HTTP 401"), "{e}");
    }

    #[test]
    fn credentials_are_never_sent_to_a_plain_http_realm_off_this_machine() {
        // A registry on 127.0.0.1 whose challenge names a plain-HTTP realm that is not a
        // loopback host (0.0.0.0 is not one, although connecting to it reaches this machine).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let realm = TcpListener::bind("0.0.0.0:0").unwrap();
        let realm_port = realm.local_addr().unwrap().port();
        realm.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut h = String::new();
            while reader.read_line(&mut h).unwrap() > 0 && h != "\r\n" {
                h.clear();
            }
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://0.0.0.0:{realm_port}/token\",service=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        });
        let cfg = DockerConfig::parse(&format!(
            r#"{{"auths": {{"127.0.0.1:{port}": {{"auth": "dTpw"}}}}}}"#
        ))
        .unwrap();
        let reg = Registry::new(&cfg, Duration::from_secs(5));
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
        let e = format!("{:#}", reg.check(&image).unwrap_err());
        handle.join().unwrap();
        assert!(e.contains("over plain HTTP"), "{e}");
        assert!(realm.accept().is_err(), "the realm was asked: {e}");
    }

    #[test]
    fn unreachable_registry_is_an_error_naming_the_image() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = DockerConfig::default();
        let reg = Registry::new(&cfg, Duration::from_secs(5));
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/app:1")).unwrap();
        let e = format!("{:#}", reg.check(&image).unwrap_err());
        assert!(e.contains(&format!("image 127.0.0.1:{port}/app:1")), "{e}");
    }
}
