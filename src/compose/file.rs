//! A compose file as updater reads it: its services and the image each one runs. Compose files
//! are YAML; `yaml-rust2` parses them (a maintained, pure-Rust YAML 1.2 parser; updater needs a
//! tree to walk, not serde types). Everything else in the file is Compose's business.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

use super::image::ImageRef;

/// The file names Compose looks for, in its order, when a module names none.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// One service of a compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `image:`; `None` for a service Compose builds (`build:` without `image:`).
    pub image: Option<ImageRef>,
}

/// The compose file of a module directory: `file` when given (a relative path inside the
/// directory), else the first of [`DEFAULT_FILES`] that exists.
pub fn locate(dir: &Path, file: Option<&str>) -> Result<PathBuf> {
    match file {
        Some(f) => {
            let rel = Path::new(f);
            if f.is_empty()
                || rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                bail!("metadata.compose file {f:?} must be a relative path inside the module");
            }
            let path = dir.join(rel);
            if !path.is_file() {
                bail!("compose file {} is missing", path.display());
            }
            Ok(path)
        }
        None => DEFAULT_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no compose file in {} (looked for {})",
                    dir.display(),
                    DEFAULT_FILES.join(", ")
                )
            }),
    }
}

/// Reads the services of the compose file at `path`.
pub fn read(path: &Path) -> Result<Vec<Service>> {
    let text = crate::fs::read_to_string(path)?;
    parse(&text).with_context(|| format!("reading compose file {}", path.display()))
}

/// Parses compose-file text into its services, sorted by name. A service needs `image:` or
/// `build:`; every `image:` must be a literal, valid reference.
pub fn parse(text: &str) -> Result<Vec<Service>> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("invalid YAML: {e}"))?;
    let doc = match docs.as_slice() {
        [doc] => doc,
        [] => bail!("the file is empty"),
        _ => bail!(
            "the file holds {} YAML documents; a compose file is one",
            docs.len()
        ),
    };
    let Some(top) = doc.as_hash() else {
        bail!("the top level is not a mapping");
    };
    let services = match top.get(&Yaml::String("services".into())) {
        Some(Yaml::Hash(h)) => h,
        Some(_) => bail!("`services` is not a mapping"),
        None => bail!("there is no `services` mapping"),
    };
    let mut out = Vec::new();
    for (key, body) in services {
        let Some(name) = key.as_str() else {
            bail!("a service name is not a string: {key:?}");
        };
        let Some(body) = body.as_hash() else {
            bail!("service {name:?} is not a mapping");
        };
        let image = match body.get(&Yaml::String("image".into())) {
            Some(Yaml::String(s)) => {
                Some(ImageRef::parse(s).with_context(|| format!("service {name:?}: image"))?)
            }
            Some(other) => bail!("service {name:?}: `image` is not a string: {other:?}"),
            None if body.contains_key(&Yaml::String("build".into())) => None,
            None => bail!("service {name:?} has neither `image` nor `build`"),
        };
        out.push(Service {
            name: name.to_string(),
            image,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(text: &str) -> Vec<(String, Option<String>)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.image.map(|i| i.original)))
            .collect()
    }

    #[test]
    fn services_and_their_images_are_read_sorted_by_name() {
        let text = "
name: demo
x-common: &common
  restart: unless-stopped
services:
  web:
    <<: *common
    image: \"127.0.0.1:5000/web:2\"
    healthcheck:
      test: [\"CMD\", \"true\"]
  db:
    image: postgres:16
  tool:
    build: ./tool
volumes:
  data: {}
";
        assert_eq!(
            images(text),
            vec![
                ("db".into(), Some("postgres:16".into())),
                ("tool".into(), None),
                ("web".into(), Some("127.0.0.1:5000/web:2".into())),
            ]
        );
    }

    #[test]
    fn a_bad_file_is_an_error_that_says_what_is_wrong() {
        for (text, want) in [
            ("", "empty"),
            ("services: [a, b]", "not a mapping"),
            ("version: '3'", "no `services`"),
            ("services:\n  web: {}", "neither `image` nor `build`"),
            ("services:\n  web:\n    image: [1]", "not a string"),
            ("services:\n  web:\n    image: ${IMG}", "uses a variable"),
            (
                "services:\n  web:\n    image: Bad:1",
                "invalid repository name",
            ),
            ("services: {web: {image: a}\n", "invalid YAML"),
            ("a: 1\n---\nb: 2\n", "2 YAML documents"),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn locate_refuses_paths_that_leave_the_module() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x.yml", "/etc/passwd", "", "a/../../b"] {
            assert!(locate(dir.path(), Some(bad)).is_err(), "{bad}");
        }
        assert!(locate(dir.path(), None)
            .unwrap_err()
            .to_string()
            .contains("no compose file"));
        std::fs::write(dir.path().join("docker-compose.yml"), "services: {}").unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {}").unwrap();
        assert_eq!(
            locate(dir.path(), None).unwrap(),
            dir.path().join("compose.yaml")
        );
    }
}
