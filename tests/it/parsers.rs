//! Property tests of the public parsers (SPEC §3, §7 "Bad input gets a clear error ... never a
//! panic"), without extra crates: a deterministic xorshift generator produces random inputs and
//! mutations of valid documents (byte flips, truncations, insertions of JSON fragments, deep
//! nesting). Every call runs under `catch_unwind`, so one test reports every panicking input;
//! results are checked for sanity (round trips, errors that name the file and carry the value).

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use updater::global_index::GlobalIndex;
use updater::journal;
use updater::module::{valid_name, ModuleIndex};
use updater::state::State;
use updater::version::Version;

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn string_from(&mut self, alphabet: &[&str], max_len: usize) -> String {
        let n = self.below(max_len + 1);
        (0..n).map(|_| *self.pick(alphabet)).collect()
    }
}

/// Inputs a parser accepted (shows that the checks on successes ran often enough).
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

fn accepted() {
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
}

/// Counts inputs and collects panics and insane results.
#[derive(Default)]
struct Fuzz {
    inputs: usize,
    panics: Vec<String>,
    violations: Vec<String>,
}

impl Fuzz {
    fn run<I: Debug + ?Sized>(
        &mut self,
        what: &str,
        input: &I,
        f: impl FnOnce() -> Result<(), String>,
    ) {
        self.inputs += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => {}
            Ok(Err(v)) => {
                if self.violations.len() < 50 {
                    self.violations.push(format!(
                        "{what}: {v}\n  input: {:.300}",
                        format!("{input:?}")
                    ));
                }
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.panics.push(format!(
                    "{what}: panic {msg:?}\n  input: {:.300}",
                    format!("{input:?}")
                ));
            }
        }
    }
}

const JSON_FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "-0.0",
    "18446744073709551616",
    "-9223372036854775809",
    "1.5",
    "\"\"",
    "\"x\"",
    "{}",
    "[]",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"é\"",
    "\u{feff}",
    " ",
    "\n",
    "\t",
    "\"metadata\"",
    "\"packages\"",
    "\"schema_version\"",
    "\"modules\"",
    "\"step\"",
    "\"swapped\"",
    "\"backup_paths\"",
    "\"../..\"",
    "\"/etc/passwd\"",
    "{\"a\":",
    "[[[[",
    "]]]]",
    "\"1.2.3\"",
    "\"v1\"",
    "NaN",
    "Infinity",
    "//",
    "/*",
    "'",
];

/// A mutation of `doc`: byte flips, truncation, insertions of fragments, deletions,
/// duplications, or a wrap in deep nesting. Always valid UTF-8 (lossy).
fn mutate(rng: &mut Rng, doc: &str) -> String {
    let mut b: Vec<u8> = doc.as_bytes().to_vec();
    let rounds = if rng.chance(50) { 1 } else { 1 + rng.below(4) };
    for _ in 0..rounds {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] = *rng.pick(b"{}[]\",:0123456789.-+eEtrufalsn \\/vxX\x00\x7f\xff");
            }
            1 => b.truncate(rng.below(len + 1)),
            2 | 3 => {
                let i = rng.below(len + 1);
                let frag = rng.pick(JSON_FRAGMENTS).as_bytes().to_vec();
                b.splice(i..i, frag);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.below(20)).min(len);
                b.drain(i..j);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.below(40)).min(len);
                let piece = b[i..j].to_vec();
                let k = rng.below(len + 1);
                b.splice(k..k, piece);
            }
            6 => {
                // Replace a value position with deep nesting.
                let depth = *rng.pick(&[2usize, 50, 127, 128, 129, 500, 20_000]);
                let open = if rng.chance(50) { "[" } else { "{\"a\":" };
                let close = if open == "[" { "]" } else { "}" };
                let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                if let Some(i) = b.iter().position(|&c| c == b':') {
                    b.splice(i + 1..i + 1, nested.into_bytes());
                } else {
                    b = nested.into_bytes();
                }
            }
            _ => {
                let i = rng.below(len + 1);
                let frag = rng.string_from(&["a", "1", ".", "\"", "{", "}", "é", "\u{0}"], 6);
                b.splice(i..i, frag.into_bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// A random JSON value from a pool of awkward ones.
fn awkward_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 14 } else { 17 }) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(false),
        3 => json!(0),
        4 => json!(-1),
        5 => json!(u64::MAX),
        6 => json!(i64::MIN),
        7 => json!(1.5),
        8 => json!(""),
        9 => json!("../../etc"),
        10 => json!("/etc/passwd"),
        11 => json!("bin/run"),
        12 => json!(*rng.pick(&["1.2.3", "v2", "1.2", "01.2.3", "1.2.3-rc.1", "x", " 3 "])),
        13 => json!(rng.string_from(&["a", ".", "/", "-", "1", "é", "\\", " "], 12)),
        14 => Value::Array(
            (0..rng.below(4))
                .map(|_| awkward_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                let k = rng
                    .pick(&[
                        "metadata",
                        "schema_version",
                        "a",
                        "",
                        "packages",
                        "backup_paths",
                    ])
                    .to_string();
                m.insert(k, awkward_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// JSON equality, with floats compared to a relative 1e-12 (keys in order).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

fn has_parent_or_root(p: &Path) -> bool {
    p.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    })
}

// ---------------------------------------------------------------------------------------------

fn fuzz_versions(rng: &mut Rng, f: &mut Fuzz) {
    let alphabet = [
        "0",
        "1",
        "2",
        "9",
        "10",
        "007",
        ".",
        ".",
        ".",
        "v",
        "V",
        "-",
        "+",
        "a",
        "rc",
        "Z",
        "x",
        " ",
        "\t",
        "é",
        "\u{2003}",
        "١",
        "\u{0}",
        "99999999999999999999",
    ];
    let check = |f: &mut Fuzz, text: String| {
        f.run("Version::parse", &text, || match Version::parse(&text) {
            Ok(v) => {
                accepted();
                let s = v.to_string();
                if s.starts_with(['v', 'V']) || s.trim() != s {
                    return Err(format!("displayed as {s:?}"));
                }
                match Version::parse(&s) {
                    Ok(back) if back == v => {}
                    other => return Err(format!("round trip of {s:?} gave {other:?}")),
                }
                if s == "0.0.0" && !text.contains('0') {
                    return Err("read as 0.0.0 without a 0 in it".into());
                }
                let core = s.split(['-', '+']).next().unwrap_or("");
                if core.split('.').count() != 3 {
                    return Err(format!("{s:?} does not have three components"));
                }
                Ok(())
            }
            Err(e) => {
                if e.value != text {
                    return Err(format!("error carries {:?}", e.value));
                }
                if !e.to_string().contains("invalid version") {
                    return Err(format!("error text {e}"));
                }
                Ok(())
            }
        });
    };
    for _ in 0..6000 {
        let s = rng.string_from(&alphabet, 12);
        check(f, s);
    }
    // Mostly well-formed ones, so that successes (and their round trips) are frequent.
    let idents = [
        "rc", "1", "alpha", "beta.2", "0", "01", "x-y", "", "a..b", "RC1",
    ];
    for _ in 0..4000 {
        let mut s = String::new();
        if rng.chance(20) {
            s.push(*rng.pick(&['v', 'V', ' ']));
        }
        let parts = 1 + rng.below(4);
        let nums: Vec<String> = (0..parts)
            .map(|_| {
                rng.pick(&["0", "1", "2", "10", "00", "01", "123456789", ""])
                    .to_string()
            })
            .collect();
        s.push_str(&nums.join("."));
        if rng.chance(40) {
            s.push('-');
            s.push_str(rng.pick::<&str>(&idents));
        }
        if rng.chance(25) {
            s.push('+');
            s.push_str(rng.pick::<&str>(&idents));
        }
        if rng.chance(10) {
            s.push(' ');
        }
        check(f, s);
    }
    // Known cases.
    for (ok, text) in [
        (true, "1"),
        (true, "v1.2"),
        (true, "1.2.3-rc.1+build.5"),
        (false, ""),
        (false, "v"),
        (false, "1.2.3.4"),
        (false, "1..2"),
        (false, "-1"),
    ] {
        f.run("Version::parse known", text, || {
            if Version::parse(text).is_ok() == ok {
                Ok(())
            } else {
                Err(format!("expected ok={ok}"))
            }
        });
    }
}

fn valid_global_docs() -> Vec<String> {
    vec![
        serde_json::to_string_pretty(&json!({
            "metadata": { "schema_version": "1.0.0", "channel": "stable",
                          "branch": "master", "repository_url": "https://example.org/updates.git" },
            "packages": { "adblock": "1.1.0", "os": "1.0.0" }
        }))
        .unwrap(),
        r#"{"zeta": 1, "metadata": {"b": 2, "require_signed": true}, "packages": {}, "alpha": {"x": [1, 2]}}"#
            .to_string(),
        "{}".to_string(),
        r#"{"packages": {"a": 1, "b": null, "c": {"v": "2"}}}"#.to_string(),
    ]
}

fn fuzz_global_index(rng: &mut Rng, f: &mut Fuzz) {
    let path = Path::new("/fuzz/root/index.json");
    let seeds = valid_global_docs();
    let check = |f: &mut Fuzz, text: String| {
        f.run("GlobalIndex::parse", &text, || {
            match GlobalIndex::parse(path, &text) {
                Ok(mut idx) => {
                    accepted();
                    let _ = (idx.repository_url(), idx.branch(), idx.require_signed());
                    let pk = idx.packages();
                    idx.set_packages(&pk);
                    idx.set_metadata("branch", "main");
                    let out = serde_json::to_string(&Value::Object(idx.doc.clone()))
                        .map_err(|e| format!("cannot serialize: {e}"))?;
                    let back = GlobalIndex::parse(path, &out).map_err(|e| format!("{e:#}"))?;
                    // Equal, up to the last bit of floats (serde_json without `float_roundtrip`
                    // may read a printed float back one ULP off).
                    if !same_json(
                        &Value::Object(back.doc.clone()),
                        &Value::Object(idx.doc.clone()),
                    ) {
                        return Err("rewritten document does not read back the same".into());
                    }
                    if back.packages() != pk {
                        return Err("packages changed across a rewrite".into());
                    }
                    Ok(())
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if msg.contains("/fuzz/root/index.json") {
                        Ok(())
                    } else {
                        Err(format!("error does not name the file: {msg}"))
                    }
                }
            }
        });
    };
    for s in &seeds {
        check(f, s.clone());
    }
    for _ in 0..3000 {
        let seed = rng.pick(&seeds).clone();
        let m = mutate(rng, &seed);
        check(f, m);
    }
    for _ in 0..1000 {
        let mut doc = serde_json::Map::new();
        for _ in 0..rng.below(4) {
            let k = rng.pick(&["metadata", "packages", "other", ""]).to_string();
            doc.insert(k, awkward_value(rng, 0));
        }
        check(f, Value::Object(doc).to_string());
    }
}

fn valid_module_docs() -> Vec<String> {
    vec![
        serde_json::to_string_pretty(&json!({
            "metadata": {
                "schema_version": "v1.2", "enabled": false, "priority": 5,
                "depends_on": ["base", "net.tools"], "entry": "bin/run", "health": "health.sh",
                "timeout_secs": 9
            },
            "configuration": { "backup_paths": ["/etc/x.conf", "/var/lib/y"], "other": 1 }
        }))
        .unwrap(),
        r#"{"metadata": {"schema_version": "1.0.0"}, "configuration": {}}"#.to_string(),
        r#"{"metadata": {"schema_version": 2, "priority": "high", "timeout_secs": -3, "entry": "index.py"}}"#
            .to_string(),
    ]
}

fn check_module_result(path: &Path, text: &str) -> Result<(), String> {
    match ModuleIndex::parse(path, text) {
        Ok(m) => {
            accepted();
            let v = m.version.to_string();
            if Version::parse(&v).ok().as_ref() != Some(&m.version) {
                return Err(format!("version {v} does not read back"));
            }
            for p in &m.backup_paths {
                if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                    return Err(format!("backup path {} accepted", p.display()));
                }
            }
            for (k, e) in [("entry", &m.entry), ("health", &m.health)] {
                if let Some(e) = e {
                    if e.is_empty() || has_parent_or_root(Path::new(e)) {
                        return Err(format!("{k} {e:?} accepted"));
                    }
                }
            }
            if let Some(d) = m.depends_on.iter().find(|d| !valid_name(d)) {
                return Err(format!("depends_on {d:?} accepted"));
            }
            if m.timeout.is_zero() {
                return Err("zero timeout".into());
            }
            if let Some(w) = m
                .warnings
                .iter()
                .find(|w| !w.contains("/fuzz/m/index.json"))
            {
                return Err(format!("warning does not name the file: {w}"));
            }
            Ok(())
        }
        Err(e) => {
            let msg = format!("{e:#}");
            if msg.contains("/fuzz/m/index.json") {
                Ok(())
            } else {
                Err(format!("error does not name the file: {msg}"))
            }
        }
    }
}

fn fuzz_module_index(rng: &mut Rng, f: &mut Fuzz) {
    let path = Path::new("/fuzz/m/index.json");
    let seeds = valid_module_docs();
    for s in &seeds {
        let s = s.clone();
        f.run("ModuleIndex::parse seed", &s, || {
            ModuleIndex::parse(path, &s)
                .map(|_| ())
                .map_err(|e| format!("a valid document is refused: {e:#}"))
        });
    }
    for _ in 0..3500 {
        let seed = rng.pick(&seeds).clone();
        let text = mutate(rng, &seed);
        f.run("ModuleIndex::parse (mutated)", &text, || {
            check_module_result(path, &text)
        });
    }
    // Structured: every known field set to awkward values.
    let fields = [
        "schema_version",
        "enabled",
        "priority",
        "depends_on",
        "entry",
        "health",
        "timeout_secs",
    ];
    for _ in 0..2500 {
        let mut meta = serde_json::Map::new();
        meta.insert("schema_version".into(), json!("1.0.0"));
        for _ in 0..1 + rng.below(3) {
            let k = rng.pick(&fields).to_string();
            meta.insert(k, awkward_value(rng, 0));
        }
        let mut doc = json!({ "metadata": Value::Object(meta) });
        if rng.chance(50) {
            doc["configuration"] = json!({ "backup_paths": awkward_value(rng, 1) });
        }
        if rng.chance(5) {
            doc = awkward_value(rng, 0);
        }
        let text = doc.to_string();
        f.run("ModuleIndex::parse (fields)", &text, || {
            check_module_result(path, &text)
        });
    }
}

fn valid_journal_docs() -> Vec<String> {
    vec![
        serde_json::to_string_pretty(&json!({ "modules": {
            "alpha": { "step": "swapped", "version": "1.0.0", "new_ino": 42, "had_old": true,
                       "backup_paths": ["/etc/x"] },
            "beta": { "step": "staging", "version": "2.0.0", "had_old": false },
            "gamma": { "step": "committed", "version": "3.0.0", "new_ino": null, "had_old": true,
                       "backup_paths": [] }
        }}))
        .unwrap(),
        r#"{"modules": {}}"#.to_string(),
        "{}".to_string(),
    ]
}

/// The legacy manifest parser (SPEC §6): mutations of valid manifests and awkward field values.
fn fuzz_manifest(rng: &mut Rng, f: &mut Fuzz) {
    let path = Path::new("/fuzz/root/manifest.json");
    let seeds = [
        json!({ "entrypoint": "all_services", "updates": [
            { "name": "adblock", "version": "1.0.0", "lastSafeVersion": "1.0.0",
              "checksum": format!("sha256:{}", "ab".repeat(32)), "lastApplied": "2024-06-10T15:23:00Z",
              "enabled": true, "description": "x", "args": ["--verify"] },
            { "name": "all_services", "enabled": true, "children": ["adblock", "gogs"] } ] })
        .to_string(),
        json!({ "updates": [ { "name": "all_services", "children": [] } ] }).to_string(),
    ];
    for s in &seeds {
        let s = s.clone();
        f.run("Manifest::parse seed", &s, || {
            updater::legacy::Manifest::parse(path, &s)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        });
    }
    for _ in 0..3000 {
        let seed = rng.pick(&seeds).clone();
        let text = mutate(rng, &seed);
        f.run("Manifest::parse", &text, || {
            match updater::legacy::Manifest::parse(path, &text) {
                Ok(_) => accepted(),
                Err(e) if !format!("{e:#}").contains("manifest.json") => {
                    return Err(format!("error does not name the file: {e:#}"));
                }
                Err(_) => {}
            }
            Ok(())
        });
    }
    for _ in 0..1000 {
        let text = json!({ "entrypoint": awkward_value(rng, 1), "updates": [
            { "name": awkward_value(rng, 1), "enabled": awkward_value(rng, 1),
              "args": awkward_value(rng, 1), "checksum": awkward_value(rng, 1) },
            { "name": "all_services", "children": awkward_value(rng, 2) } ] })
        .to_string();
        f.run("Manifest::parse (fields)", &text, || {
            let _ = updater::legacy::Manifest::parse(path, &text);
            Ok(())
        });
    }
}

fn fuzz_journal(rng: &mut Rng, f: &mut Fuzz) {
    let seeds = valid_journal_docs();
    for (s, n) in seeds.iter().zip([3usize, 0, 0]) {
        let s = s.clone();
        f.run("journal::validate seed", &s, || {
            match journal::validate(&s) {
                Ok(got) if got == n => Ok(()),
                other => Err(format!("expected Ok({n}), got {other:?}")),
            }
        });
    }
    for _ in 0..3000 {
        let seed = rng.pick(&seeds).clone();
        let text = mutate(rng, &seed);
        f.run("journal::validate", &text, || {
            if let Ok(n) = journal::validate(&text) {
                accepted();
                // (Nesting deeper than serde_json's limit for a `Value` is still JSON.)
                if let Err(e) = serde_json::from_str::<Value>(&text) {
                    if !e.to_string().contains("recursion limit") {
                        return Err(format!("accepted text that is not JSON ({n} entries): {e}"));
                    }
                }
            }
            Ok(())
        });
    }
    for _ in 0..500 {
        let text = json!({ "modules": { "m": {
            "step": awkward_value(rng, 1), "version": awkward_value(rng, 1),
            "new_ino": awkward_value(rng, 1), "had_old": awkward_value(rng, 1),
            "backup_paths": awkward_value(rng, 1) } } })
        .to_string();
        f.run("journal::validate (fields)", &text, || {
            let _ = journal::validate(&text);
            Ok(())
        });
    }
}

fn fuzz_state(rng: &mut Rng, f: &mut Fuzz) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let shown = path.display().to_string();
    let seed = serde_json::to_string_pretty(&json!({
        "last_commit": "0123456789abcdef0123456789abcdef01234567",
        "last_run": "2024-01-01T00:00:00Z",
        "updates_available": 2,
        "modules": { "m": { "result": "applied", "version": "1.0.0", "time": "2024-01-01T00:00:00Z" },
                     "n": { "result": "rolled_back", "time": "t", "error": "entry point failed" } }
    }))
    .unwrap();
    for i in 0..1500 {
        let bytes: Vec<u8> = match i % 3 {
            0 => mutate(rng, &seed).into_bytes(),
            1 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            _ => {
                let mut b = mutate(rng, &seed).into_bytes();
                let at = rng.below(b.len() + 1);
                b.insert(at, 0xff);
                b
            }
        };
        std::fs::write(&path, &bytes).unwrap();
        f.run(
            "State::load",
            &String::from_utf8_lossy(&bytes),
            || match State::load(&path) {
                Ok(s) => {
                    accepted();
                    s.save().map_err(|e| format!("save failed: {e:#}"))?;
                    let back = State::load(&path).map_err(|e| format!("reload: {e:#}"))?;
                    if back != s {
                        return Err("state does not read back the same".into());
                    }
                    Ok(())
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if msg.contains(&shown) {
                        Ok(())
                    } else {
                        Err(format!("error does not name the file: {msg}"))
                    }
                }
            },
        );
    }
}

fn reference_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128 // SPEC §3
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn fuzz_names(rng: &mut Rng, f: &mut Fuzz) {
    let alphabet = [
        "a", "Z", "0", "9", ".", "..", "_", "-", "/", " ", "\\", "\0", "é", "\n", "ａ", "٣",
    ];
    for i in 0..5000 {
        let s = if i % 50 == 0 {
            "a".repeat(250 + rng.below(10))
        } else {
            rng.string_from(&alphabet, 10)
        };
        f.run("module::valid_name", &s, || {
            let got = valid_name(&s);
            if got {
                accepted();
            }
            let want = reference_valid_name(&s);
            if got != want {
                return Err(format!("valid_name = {got}, expected {want}"));
            }
            if got && (s.contains('/') || s == "." || s == "..") {
                return Err("a path-like name is valid".into());
            }
            Ok(())
        });
    }
}

#[test]
fn parsers_never_panic_and_give_sane_results() {
    let started = std::time::Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut f = Fuzz::default();
    let mut counts = Vec::new();
    type Section = (&'static str, fn(&mut Rng, &mut Fuzz));
    let sections: [Section; 7] = [
        ("manifest", fuzz_manifest),
        ("version", fuzz_versions),
        ("global_index", fuzz_global_index),
        ("module_index", fuzz_module_index),
        ("journal", fuzz_journal),
        ("state", fuzz_state),
        ("valid_name", fuzz_names),
    ];
    for (name, section) in sections {
        let before = f.inputs;
        let acc_before = ACCEPTED.load(Ordering::Relaxed);
        section(&mut rng, &mut f);
        counts.push(format!(
            "{name} {} ({} accepted)",
            f.inputs - before,
            ACCEPTED.load(Ordering::Relaxed) - acc_before
        ));
    }
    println!(
        "parsers: {} inputs, {} panics ({}; {:.1}s)",
        f.inputs,
        f.panics.len(),
        counts.join(", "),
        started.elapsed().as_secs_f64()
    );
    assert!(f.inputs >= 20_000, "only {} inputs", f.inputs);
    assert!(
        f.panics.is_empty(),
        "{} panics:\n{}",
        f.panics.len(),
        f.panics
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        f.violations.is_empty(),
        "{} insane results (first 50):\n{}",
        f.violations.len(),
        f.violations.join("\n")
    );
}
