//! Fleet behaviour decided on each machine (issue 15, items 1 and 2): phased rollouts
//! (`metadata.rollout: {"percent": N}`, as APT's phased updates) and targeting
//! (`metadata.targets`). The machine's identity ([`Machine`]) is resolved by the settings stage;
//! `plan` asks [`decide`] about every module version it would install.
//!
//! The bucket of a machine for a module version is the first two bytes of
//! SHA-256(`machine-id` NUL `module` NUL `version`) read big-endian, mod 100: stable across
//! runs, builds and platforms, so raising N only ever adds machines.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The longest machine id, hostname, label key or value accepted.
pub const MAX_ID_BYTES: usize = 256;

/// `--phased`: whether to honour `metadata.rollout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phased {
    /// Take a phased version when this machine's bucket is below its percent (the default).
    #[default]
    Honour,
    /// Take every phased version at once.
    Always,
    /// Never take a version that is still being phased (percent below 100).
    Never,
}

impl Phased {
    /// Reads `always` or `never`.
    pub fn parse(s: &str) -> Option<Phased> {
        match s {
            "always" => Some(Phased::Always),
            "never" => Some(Phased::Never),
            _ => None,
        }
    }
}

/// Who this machine is, for rollouts and targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// `--machine-id`, else the machine-id file; `None` when neither could be read.
    pub id: Option<String>,
    pub hostname: Option<String>,
    /// `<modules-path>/.updater/labels`, overridden key by key by `--label`.
    pub labels: BTreeMap<String, String>,
    pub phased: Phased,
}

/// The bucket (0..100) of `machine_id` for `module` at `version`.
pub fn bucket(machine_id: &str, module: &str, version: &str) -> u8 {
    let mut h = Sha256::new();
    h.update(machine_id.as_bytes());
    h.update([0u8]);
    h.update(module.as_bytes());
    h.update([0u8]);
    h.update(version.as_bytes());
    let d = h.finalize();
    (u16::from_be_bytes([d[0], d[1]]) % 100) as u8
}

/// What the fleet rules say about installing one module version on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Install it.
    Take,
    /// `metadata.targets` does not select this machine.
    NotTargeted,
    /// Outside the phase: the machine's bucket (None without a machine id) and the percent.
    Deferred { bucket: Option<u8>, percent: u8 },
}

/// A version's `metadata.rollout` percent, `None` when it carries none. Errors name `path`.
pub fn rollout_percent(path: &Path, meta: &Map<String, Value>) -> Result<Option<u8>> {
    let shown = path.display();
    let v = match meta.get("rollout") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let Value::Object(o) = v else {
        bail!("{shown}: `metadata.rollout` must be an object like {{\"percent\": 25}}, not {v}");
    };
    if let Some(k) = o.keys().find(|k| *k != "percent") {
        bail!(
            "{shown}: `metadata.rollout` has an unknown key {:?} (only \"percent\")",
            crate::output::escape(k)
        );
    }
    match o.get("percent").and_then(Value::as_u64) {
        Some(p) if p <= 100 => Ok(Some(p as u8)),
        _ => bail!(
            "{shown}: `metadata.rollout.percent` must be a whole number from 0 to 100, not {}",
            o.get("percent")
                .map_or("nothing".to_string(), |v| v.to_string())
        ),
    }
}

/// `metadata.targets`: a machine is selected when ANY listed machine id, ANY listed hostname
/// or ALL listed labels match (any-of across the three kinds; an empty kind selects nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub machine_ids: Vec<String>,
    pub hostnames: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Targets {
    /// Reads `metadata.targets`; `None` when absent (every machine is selected).
    pub fn parse(path: &Path, meta: &Map<String, Value>) -> Result<Option<Targets>> {
        let shown = path.display();
        let v = match meta.get("targets") {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        let Value::Object(o) = v else {
            bail!("{shown}: `metadata.targets` must be an object with machine_ids, hostnames or labels, not {v}");
        };
        let mut t = Targets::default();
        for (k, v) in o {
            match k.as_str() {
                "machine_ids" | "hostnames" => {
                    let Value::Array(items) = v else {
                        bail!("{shown}: `metadata.targets.{k}` must be a list of strings, not {v}");
                    };
                    let mut out = Vec::new();
                    for item in items {
                        match item.as_str() {
                            Some(s) if valid_word(s) => out.push(s.to_string()),
                            _ => bail!(
                                "{shown}: `metadata.targets.{k}` entry {item} is not a non-empty string of at most {MAX_ID_BYTES} bytes without control characters"
                            ),
                        }
                    }
                    if k == "machine_ids" {
                        t.machine_ids = out;
                    } else {
                        t.hostnames = out;
                    }
                }
                "labels" => {
                    let Value::Object(m) = v else {
                        bail!("{shown}: `metadata.targets.labels` must be an object of strings, not {v}");
                    };
                    for (lk, lv) in m {
                        match lv.as_str() {
                            Some(s) if valid_word(lk) && valid_value(s) => {
                                t.labels.insert(lk.clone(), s.to_string());
                            }
                            _ => bail!(
                                "{shown}: `metadata.targets.labels` entry {:?}: {lv} is not a label (key and string value, no control characters or '=')",
                                crate::output::escape(lk)
                            ),
                        }
                    }
                }
                other => bail!(
                    "{shown}: `metadata.targets` has an unknown key {:?} (machine_ids, hostnames, labels)",
                    crate::output::escape(other)
                ),
            }
        }
        Ok(Some(t))
    }

    /// Whether these targets select `m`.
    pub fn selects(&self, m: &Machine) -> bool {
        let by_id =
            m.id.as_ref()
                .is_some_and(|id| self.machine_ids.iter().any(|x| x == id));
        let by_host = m
            .hostname
            .as_ref()
            .is_some_and(|h| self.hostnames.iter().any(|x| x.eq_ignore_ascii_case(h)));
        let by_labels = !self.labels.is_empty()
            && self
                .labels
                .iter()
                .all(|(k, v)| m.labels.get(k).is_some_and(|x| x == v));
        by_id || by_host || by_labels
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && valid_value(s)
}

fn valid_value(s: &str) -> bool {
    s.len() <= MAX_ID_BYTES && !s.chars().any(char::is_control) && !s.contains('=')
}

/// The fleet verdict on installing `module` at `version`, whose index is at `path` with the
/// metadata `meta`. A bad `rollout` or `targets` is an error naming the file.
pub fn decide(
    machine: &Machine,
    path: &Path,
    meta: &Map<String, Value>,
    module: &str,
    version: &str,
) -> Result<Verdict> {
    let targets = Targets::parse(path, meta)?;
    let percent = rollout_percent(path, meta)?;
    if targets.is_some_and(|t| !t.selects(machine)) {
        return Ok(Verdict::NotTargeted);
    }
    let Some(percent) = percent else {
        return Ok(Verdict::Take);
    };
    let b = machine.id.as_deref().map(|id| bucket(id, module, version));
    let take = match machine.phased {
        Phased::Always => true,
        Phased::Never => percent >= 100,
        Phased::Honour => percent >= 100 || b.is_some_and(|b| b < percent),
    };
    Ok(if take {
        Verdict::Take
    } else {
        Verdict::Deferred { bucket: b, percent }
    })
}

/// Checks a machine id, hostname or label part given on the command line or read from a file.
pub fn check_word(what: &str, s: &str) -> Result<()> {
    if !valid_word(s) {
        bail!(
            "{what} {:?} must be non-empty, at most {MAX_ID_BYTES} bytes, without control characters or '='",
            crate::output::escape(s)
        );
    }
    Ok(())
}

/// Reads a machine-id file: its first line, trimmed. `Ok(None)` when it does not exist.
pub fn read_machine_id(path: &Path) -> Result<Option<String>> {
    let text = match read_capped(path, 4096) {
        Ok(t) => t,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let id = text.lines().next().unwrap_or("").trim().to_string();
    check_word(&format!("machine id in {}", path.display()), &id)?;
    Ok(Some(id))
}

/// Parses a `key=value` label (from `--label` or one line of the labels file).
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("label {:?} is not key=value", crate::output::escape(s));
    };
    let (k, v) = (k.trim(), v.trim());
    check_word("label key", k)?;
    if !valid_value(v) {
        bail!(
            "label value {:?} must be at most {MAX_ID_BYTES} bytes, without control characters or '='",
            crate::output::escape(v)
        );
    }
    Ok((k.to_string(), v.to_string()))
}

/// Reads the labels file: `key=value` lines; blank lines and `#` comments are skipped. A missing
/// file holds no labels; a bad line is an error naming the file and the line.
pub fn read_labels(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match read_capped(path, 1 << 20) {
        Ok(t) => t,
        Err(e) if is_not_found(&e) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut labels = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) =
            parse_label(line).with_context(|| format!("{} line {}", path.display(), n + 1))?;
        labels.insert(k, v);
    }
    Ok(labels)
}

/// Reads at most `cap` bytes of a small text file (a fifo or a huge file cannot hang or flood
/// the run: only regular files are read).
fn read_capped(path: &Path, cap: u64) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mut bytes = Vec::new();
    file.take(cap)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{:032x}", i * 7919 + 13)).collect()
    }

    #[test]
    fn the_bucket_is_stable_and_known() {
        // Pinned: SHA-256("4c4c4544004a\0web\01.2.0"), first two bytes big-endian, mod 100
        // (computed independently with Python's hashlib). A change here would reshuffle every
        // fleet's phases.
        assert_eq!(bucket("4c4c4544004a", "web", "1.2.0"), 63);
        assert_eq!(bucket("ab", "c", "1"), 80);
        assert_eq!(
            bucket("4c4c4544004a", "web", "1.2.0"),
            63,
            "same answer twice"
        );
        let spread: std::collections::BTreeSet<u8> = ids(50)
            .iter()
            .map(|id| bucket(id, "web", "1.2.0"))
            .collect();
        assert!(spread.len() > 20, "buckets barely vary: {spread:?}");
    }

    #[test]
    fn raising_the_percent_never_removes_a_machine() {
        let machines = ids(200);
        let mut before: Vec<bool> = vec![false; machines.len()];
        for percent in 0..=100u8 {
            for (i, id) in machines.iter().enumerate() {
                let m = Machine {
                    id: Some(id.clone()),
                    ..Machine::default()
                };
                let v = decide(
                    &m,
                    Path::new("i.json"),
                    &meta(json!({"rollout": {"percent": percent}})),
                    "web",
                    "2.0.0",
                )
                .unwrap();
                let takes = v == Verdict::Take;
                assert!(!before[i] || takes, "{id} dropped out at {percent}%");
                before[i] = takes;
            }
        }
        assert!(before.iter().all(|t| *t), "100% takes every machine");
    }

    #[test]
    fn a_quarter_rollout_takes_about_a_quarter_of_200_machines() {
        let taken = ids(200)
            .iter()
            .filter(|id| bucket(id, "web", "2.0.0") < 25)
            .count();
        // 25% of 200 = 50, within ±8 points (±16 machines).
        assert!((34..=66).contains(&taken), "{taken} of 200");
    }

    #[test]
    fn phased_overrides_and_no_machine_id() {
        let m = |phased, id: Option<&str>| Machine {
            id: id.map(str::to_string),
            phased,
            ..Machine::default()
        };
        let half = meta(json!({"rollout": {"percent": 0}}));
        let p = Path::new("i.json");
        assert_eq!(
            decide(&m(Phased::Always, Some("x")), p, &half, "a", "1").unwrap(),
            Verdict::Take
        );
        assert!(matches!(
            decide(&m(Phased::Honour, None), p, &half, "a", "1").unwrap(),
            Verdict::Deferred {
                bucket: None,
                percent: 0
            }
        ));
        let full = meta(json!({"rollout": {"percent": 100}}));
        assert_eq!(
            decide(&m(Phased::Never, Some("x")), p, &full, "a", "1").unwrap(),
            Verdict::Take
        );
        let some = meta(json!({"rollout": {"percent": 99}}));
        assert!(matches!(
            decide(&m(Phased::Never, Some("x")), p, &some, "a", "1").unwrap(),
            Verdict::Deferred { .. }
        ));
    }

    #[test]
    fn targets_select_by_any_id_any_hostname_or_all_labels() {
        let t = Targets::parse(
            Path::new("i.json"),
            &meta(
                json!({"targets": {"machine_ids": ["m1"], "hostnames": ["web-1"],
                "labels": {"role": "web", "site": "ams"}}}),
            ),
        )
        .unwrap()
        .unwrap();
        let mut m = Machine::default();
        assert!(!t.selects(&m));
        m.id = Some("m1".into());
        assert!(t.selects(&m));
        m.id = Some("m2".into());
        m.hostname = Some("WEB-1".into());
        assert!(t.selects(&m));
        m.hostname = None;
        m.labels.insert("role".into(), "web".into());
        assert!(!t.selects(&m), "only one of two labels");
        m.labels.insert("site".into(), "ams".into());
        assert!(t.selects(&m));
    }

    #[test]
    fn bad_values_name_the_file() {
        let p = Path::new("/r/modules/a/index.json");
        for bad in [
            json!({"rollout": 25}),
            json!({"rollout": {"percent": 101}}),
            json!({"rollout": {"percent": -1}}),
            json!({"rollout": {"percent": "25"}}),
            json!({"rollout": {"pct": 25}}),
            json!({"targets": ["m1"]}),
            json!({"targets": {"hostnames": "web"}}),
            json!({"targets": {"machine_ids": [""]}}),
            json!({"targets": {"labels": {"a": 1}}}),
            json!({"targets": {"groups": []}}),
        ] {
            let e = decide(&Machine::default(), p, &meta(bad.clone()), "a", "1").unwrap_err();
            assert!(
                format!("{e:#}").contains("/r/modules/a/index.json"),
                "{bad}: {e:#}"
            );
        }
    }

    #[test]
    fn labels_file_lines() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("labels");
        assert!(read_labels(&f).unwrap().is_empty());
        std::fs::write(&f, "# site\nrole = web\n\nsite=ams\n").unwrap();
        let l = read_labels(&f).unwrap();
        assert_eq!(l.get("role").map(String::as_str), Some("web"));
        assert_eq!(l.get("site").map(String::as_str), Some("ams"));
        std::fs::write(&f, "role\n").unwrap();
        let e = format!("{:#}", read_labels(&f).unwrap_err());
        assert!(e.contains("labels line 1"), "{e}");
    }
}
