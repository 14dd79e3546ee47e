//! The OpenSSH allowed-signers file (SPEC §9): [`AllowedSigners::load`] / [`AllowedSigners::parse`]
//! and the signer lines' options (`namespaces=`, `valid-after=`, `valid-before=`).
//!
//! As ssh-keygen(1) "ALLOWED SIGNERS": `principals [options] keytype base64 [comment]`, `#`
//! comments and blank lines ignored. Differences from OpenSSH, all failing closed:
//! - `cert-authority` lines are skipped (signatures by certificates are not supported); the
//!   reason is logged and kept in [`AllowedSigners::skipped`].
//! - `valid-after` / `valid-before` are checked against the time of verification (the time the
//!   machine would start using the commit), not the commit's own, forgeable, date. A timestamp
//!   without a `Z` suffix is local time in OpenSSH; no time-zone database is read here, so such a
//!   bound is taken at its strictest across all time zones (valid-after as UTC+12h later,
//!   valid-before as UTC−14h earlier): a window can only shrink, by at most a day.
//! - Principals are not matched against anything (there is no `-I` identity); the principals
//!   field of the matching line is what [`verify_commit`](super::verify_commit) returns, as `ssh-keygen -Y
//!   find-principals` prints it.
//! - For FIDO (`sk-`) keys the user-presence flag of the signature is not required.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ssh_key::{HashAlg, PublicKey};

use super::pattern::match_pattern_list;
use crate::clock;

/// One bound of a signer's validity window (`valid-after=` / `valid-before=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBound {
    /// The timestamp as written in the file, e.g. `20250101Z` or `202501011200`.
    pub raw: String,
    /// The bound actually enforced, in seconds since the Unix epoch. For a local-time
    /// timestamp (no `Z`) this is the strictest reading across time zones (see module docs).
    pub unix: i64,
}

/// One line of an OpenSSH allowed_signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    /// The comma-separated principals field, split (patterns are kept as written).
    pub principals: Vec<String>,
    /// `namespaces="..."`: the pattern-list of namespaces this key may sign for; `None` = any.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after="..."`.
    pub valid_after: Option<TimeBound>,
    /// `valid-before="..."`.
    pub valid_before: Option<TimeBound>,
    pub key: PublicKey,
    /// 1-based line number in the file, for messages.
    pub line: usize,
}

impl AllowedSigner {
    /// The principals field as written (comma-joined).
    pub fn principal(&self) -> String {
        self.principals.join(",")
    }

    /// Whether this line's `namespaces=` option (if any) admits `namespace`, with OpenSSH
    /// pattern-list semantics (`*`, `?`, `!negation`).
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(patterns) => match_pattern_list(namespace, patterns),
        }
    }

    /// `Err(reason)` when `now` (seconds since the epoch) is outside the validity window.
    pub(super) fn check_validity(&self, now: i64) -> std::result::Result<(), String> {
        if let Some(after) = &self.valid_after {
            if now < after.unix {
                return Err(format!(
                    "is not valid before {} (valid-after=\"{}\")",
                    clock::iso8601_unix(after.unix),
                    after.raw
                ));
            }
        }
        if let Some(before) = &self.valid_before {
            if now > before.unix {
                return Err(format!(
                    "expired at {} (valid-before=\"{}\")",
                    clock::iso8601_unix(before.unix),
                    before.raw
                ));
            }
        }
        Ok(())
    }
}

/// A parsed allowed_signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    /// The file the signers were read from, for messages.
    pub path: PathBuf,
    pub signers: Vec<AllowedSigner>,
    /// Lines that were understood but not used, as `<path>:<line>: <reason>`
    /// (`cert-authority` lines).
    pub skipped: Vec<String>,
}

impl AllowedSigners {
    /// Parses the OpenSSH allowed_signers format (ssh-keygen(1) "ALLOWED SIGNERS"): comments
    /// (`#`), blank lines, `principals [options] keytype base64 [comment]`, quoted principals
    /// and option values. The first bad line is an error naming `path` and the line number; a
    /// file without any usable signer line is an error too.
    pub fn parse(path: &Path, text: &str) -> Result<AllowedSigners> {
        let mut signers = Vec::new();
        let mut skipped = Vec::new();
        for (idx, raw) in text.split('\n').enumerate() {
            let line = idx + 1;
            let content = raw
                .strip_suffix('\r')
                .unwrap_or(raw)
                .trim_start_matches([' ', '\t']);
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            match parse_line(content, line).with_context(|| {
                format!("{}:{line}: invalid allowed-signers line", path.display())
            })? {
                Parsed::Signer(s) => signers.push(*s),
                Parsed::Skipped(reason) => {
                    let msg = format!("{}:{line}: {reason}", path.display());
                    log::warn!("Ignoring allowed signer at {msg}");
                    skipped.push(msg);
                }
            }
        }
        if signers.is_empty() {
            bail!(
                "{}: no usable allowed signer (expected lines like `user@example.com ssh-ed25519 \
                 AAAA...`{})",
                path.display(),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!("; {} line(s) skipped", skipped.len())
                }
            );
        }
        Ok(AllowedSigners {
            path: path.to_path_buf(),
            signers,
            skipped,
        })
    }

    /// Reads and parses `path`. A missing file is an error naming it and saying how to create it.
    pub fn load(path: &Path) -> Result<AllowedSigners> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "allowed signers file {} does not exist; create it with one line per trusted \
                 key, e.g. `echo \"you@example.com $(cat ~/.ssh/id_ed25519.pub)\" >> {}` (format: \
                 ssh-keygen(1) ALLOWED SIGNERS), or point --allowed-signers at another file",
                path.display(),
                path.display()
            ),
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!("cannot read allowed signers file {}", path.display())
                })
            }
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow!(
                "allowed signers file {} is not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        AllowedSigners::parse(path, &text)
    }
}

enum Parsed {
    Signer(Box<AllowedSigner>),
    Skipped(String),
}

/// Options of one line, as given.
#[derive(Default)]
struct LineOptions {
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<TimeBound>,
    valid_before: Option<TimeBound>,
}

/// Parses one non-comment line (leading blanks already removed).
fn parse_line(content: &str, line: usize) -> Result<Parsed> {
    let (principals_field, rest) = split_principals(content)?;
    let principals: Vec<String> = principals_field.split(',').map(str::to_string).collect();
    if principals.iter().any(|p| p.is_empty()) {
        bail!("empty principal in \"{principals_field}\"");
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    // Key blobs start with the length of the key type name: base64 "AAAA".
    if is_key_type(principals_field) && (rest.is_empty() || rest.starts_with("AAAA")) {
        bail!(
            "missing principals field: the line starts with the key type \"{principals_field}\" \
             (expected `user@example.com {principals_field} AAAA...`)"
        );
    }
    if rest.is_empty() {
        bail!("missing key after principals \"{principals_field}\"");
    }

    let first = rest.split([' ', '\t']).next().unwrap_or(rest);
    let (opts, key_text) = if looks_like_options(first) {
        let (opts_text, after) = split_options(rest)?;
        let key_text = after.trim_start_matches([' ', '\t']);
        if key_text.is_empty() {
            bail!("missing key after options \"{opts_text}\"");
        }
        (parse_options(opts_text)?, key_text)
    } else {
        (LineOptions::default(), rest)
    };
    let key = parse_key(key_text)?;

    if opts.cert_authority {
        return Ok(Parsed::Skipped(format!(
            "cert-authority is not supported (commits signed with SSH certificates are refused); \
             list the signing keys themselves instead (principals \"{principals_field}\", key {})",
            key.fingerprint(HashAlg::Sha256)
        )));
    }
    if let (Some(a), Some(b)) = (&opts.valid_after, &opts.valid_before) {
        if b.unix <= a.unix {
            bail!(
                "valid-before=\"{}\" is not after valid-after=\"{}\"",
                b.raw,
                a.raw
            );
        }
    }
    let namespaces = match opts.namespaces {
        None => None,
        Some(list) => {
            let v: Vec<String> = list.split(',').map(str::to_string).collect();
            if v.iter().any(|p| p.is_empty()) {
                bail!("empty entry in namespaces=\"{list}\"");
            }
            Some(v)
        }
    };
    if let Some(why) = unsupported_key(key.key_data()) {
        log::warn!("Allowed signer on line {line}: {why}; its signatures will be refused");
    }
    Ok(Parsed::Signer(Box::new(AllowedSigner {
        principals,
        namespaces,
        valid_after: opts.valid_after,
        valid_before: opts.valid_before,
        key,
        line,
    })))
}

/// Splits off the principals field: either a double-quoted string or up to the first blank.
fn split_principals(content: &str) -> Result<(&str, &str)> {
    if let Some(quoted) = content.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| anyhow!("missing closing quote in the principals field"))?;
        let (field, after) = (&quoted[..end], &quoted[end + 1..]);
        if !(after.is_empty() || after.starts_with([' ', '\t'])) {
            bail!("unexpected text after the quoted principals \"{field}\"");
        }
        if field.is_empty() {
            bail!("empty principals field");
        }
        Ok((field, after))
    } else {
        let end = content.find([' ', '\t']).unwrap_or(content.len());
        Ok((&content[..end], &content[end..]))
    }
}

/// Whether `s` is a public key type name (`ssh-ed25519`, `ecdsa-sha2-nistp256`, ...).
fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Whether the field after the principals is an options field rather than a key type: options
/// are `cert-authority` or `name=value` items (OpenSSH decides by failing to parse a key).
fn looks_like_options(token: &str) -> bool {
    !is_key_type(token)
        && (token.contains('=') || token.to_ascii_lowercase().starts_with("cert-authority"))
}

/// Splits the options field off `rest`: it ends at the first blank outside double quotes
/// (`\"` inside quotes is an escaped quote), as OpenSSH's `sshkey_advance_past_options`.
fn split_options(rest: &str) -> Result<(&str, &str)> {
    let bytes = rest.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' if !in_quotes => return Ok((&rest[..i], &rest[i..])),
            b'\\' if in_quotes && bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => in_quotes = !in_quotes,
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        bail!("missing closing quote in options \"{rest}\"");
    }
    Ok((rest, ""))
}

/// Parses a comma-separated options field (keywords case-insensitive, values double-quoted).
fn parse_options(field: &str) -> Result<LineOptions> {
    let mut opts = LineOptions::default();
    let mut s = field;
    loop {
        if let Some(after) = strip_prefix_ci(s, "cert-authority") {
            if !(after.is_empty() || after.starts_with(',')) {
                bail!("unsupported option \"{}\"", option_name(s));
            }
            opts.cert_authority = true;
            s = after;
        } else if let Some(after) = strip_prefix_ci(s, "namespaces=") {
            let (value, after) = dequote(after, "namespaces")?;
            if opts.namespaces.replace(value).is_some() {
                bail!("namespaces option given twice");
            }
            s = after;
        } else if let Some(after) = strip_prefix_ci(s, "valid-after=") {
            let (value, after) = dequote(after, "valid-after")?;
            let bound = parse_time_bound(&value, true)
                .with_context(|| format!("invalid valid-after=\"{value}\""))?;
            if opts.valid_after.replace(bound).is_some() {
                bail!("valid-after option given twice");
            }
            s = after;
        } else if let Some(after) = strip_prefix_ci(s, "valid-before=") {
            let (value, after) = dequote(after, "valid-before")?;
            let bound = parse_time_bound(&value, false)
                .with_context(|| format!("invalid valid-before=\"{value}\""))?;
            if opts.valid_before.replace(bound).is_some() {
                bail!("valid-before option given twice");
            }
            s = after;
        } else {
            bail!(
                "unsupported option \"{}\" (supported: cert-authority, namespaces=\"...\", \
                 valid-after=\"...\", valid-before=\"...\")",
                option_name(s)
            );
        }
        match s.strip_prefix(',') {
            None if s.is_empty() => return Ok(opts),
            None => bail!("unexpected \"{s}\" after an option (options are separated by commas)"),
            Some("") => bail!("trailing comma in options \"{field}\""),
            Some(next) => s = next,
        }
    }
}

/// The option at the start of `s`, for messages.
fn option_name(s: &str) -> &str {
    let end = s.find([',', '=']).unwrap_or(s.len());
    &s[..end]
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => Some(&s[prefix.len()..]),
        _ => None,
    }
}

/// Reads a double-quoted option value (`\"` is a literal quote) at the start of `s`; returns it
/// and the text after the closing quote.
fn dequote<'a>(s: &'a str, name: &str) -> Result<(String, &'a str)> {
    let Some(body) = s.strip_prefix('"') else {
        bail!("the value of {name}= must be double-quoted, e.g. {name}=\"...\"");
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' if body[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            c => value.push(c),
        }
    }
    bail!("missing closing quote in the value of {name}=")
}

/// Parses `keytype base64 [comment]` (the comment is ignored).
fn parse_key(text: &str) -> Result<PublicKey> {
    let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
    let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
        bail!(
            "expected `keytype base64-key` but found \"{}\"",
            text.trim()
        );
    };
    PublicKey::from_openssh(&format!("{kind} {data}")).map_err(|e| {
        let hint = if kind.contains("-cert-") {
            " (certificates are not accepted; list the plain public key)"
        } else {
            ""
        };
        anyhow!("invalid {kind} public key: {e}{hint}")
    })
}

/// Parses an OpenSSH timestamp: `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`. Without `Z` it is local
/// time of an unknown zone, so the strictest instant is used: the latest possible one for a
/// lower bound (`is_lower`), the earliest for an upper bound.
fn parse_time_bound(raw: &str, is_lower: bool) -> Result<TimeBound> {
    let (digits, utc) = match raw.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (raw, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        bail!("expected YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]");
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        // All bytes are ASCII digits (checked above) and at most 4 long: cannot fail.
        digits[r].parse().unwrap_or(0)
    };
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (num(8..10), num(10..12), 0),
        _ => (num(8..10), num(10..12), num(12..14)),
    };
    if !(1..=12).contains(&month) || day < 1 || day > clock::days_in_month(year, month) {
        bail!("no such date {year:04}-{month:02}-{day:02}");
    }
    if hour > 23 || minute > 59 || second > 59 {
        bail!("no such time {hour:02}:{minute:02}:{second:02}");
    }
    let mut unix =
        clock::days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    if !utc {
        // Local time is UTC−12h .. UTC+14h: the instant is between T−14h and T+12h.
        unix += if is_lower { 12 * 3600 } else { -14 * 3600 };
    }
    Ok(TimeBound {
        raw: raw.to_string(),
        unix,
    })
}

/// Why signatures by `key` cannot be verified by this build, if they cannot.
pub(super) fn unsupported_key(key: &ssh_key::public::KeyData) -> Option<String> {
    use ssh_key::public::KeyData;
    let supported = match key {
        KeyData::Ecdsa(k) => k.curve() != ssh_key::EcdsaCurve::NistP521,
        KeyData::Ed25519(_)
        | KeyData::Rsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => true,
        _ => false,
    };
    (!supported).then(|| {
        format!(
            "{} keys are not supported (use ssh-ed25519, ecdsa-sha2-nistp256/384 or rsa)",
            key.algorithm()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::days_from_civil;
    use crate::trust::test_support::Scratch;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

    fn parse(text: &str) -> Result<AllowedSigners> {
        AllowedSigners::parse(Path::new("/etc/updater/allowed_signers"), text)
    }

    fn parse_err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn parses_allowed_signers_files() {
        let text = format!(
            "# comment\n\n   # indented comment\r\n\
             a@x,b@y {ED} a comment with spaces\n\
             \t c@z  namespaces=\"git,file\"   {ED}\r\n\
             \"d@w e@v\" NameSpaces=\"a\\\"b\",valid-after=\"20240101Z\" {ED}\n\
             *@ca.example cert-authority {ED}\n"
        );
        let a = parse(&text).unwrap();
        assert_eq!(a.signers.len(), 3);
        assert_eq!(a.signers[0].principals, ["a@x", "b@y"]);
        assert_eq!(a.signers[0].principal(), "a@x,b@y");
        assert_eq!(a.signers[0].namespaces, None);
        assert_eq!(a.signers[0].line, 4);
        assert_eq!(a.signers[0].key.to_openssh().unwrap(), format!("{ED}"));
        assert_eq!(a.signers[1].principals, ["c@z"]);
        assert_eq!(
            a.signers[1].namespaces.as_deref(),
            Some(&["git".to_string(), "file".to_string()][..])
        );
        assert_eq!(a.signers[2].principals, ["d@w e@v"]);
        assert_eq!(
            a.signers[2].namespaces.as_deref(),
            Some(&["a\"b".to_string()][..])
        );
        assert_eq!(
            a.signers[2].valid_after.as_ref().unwrap().unix,
            days_from_civil(2024, 1, 1) * 86_400
        );
        assert_eq!(a.skipped.len(), 1);
        assert!(
            a.skipped[0].starts_with("/etc/updater/allowed_signers:7: cert-authority"),
            "{:?}",
            a.skipped
        );
    }

    #[test]
    fn bad_allowed_signers_lines_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("a@x\n", "missing key"),
            (&format!("{ED}\n"), "missing principals field"),
            (&format!("{ED} comment\n"), "missing principals field"),
            (&format!("{ED}==\n"), "missing principals field"),
            (
                "a@x ssh-ed25519 AAAAnotakey\n",
                "invalid ssh-ed25519 public key",
            ),
            (&format!("a@x namespaces=git {ED}\n"), "double-quoted"),
            (
                &format!("a@x namespaces=\"git {ED}\n"),
                "missing closing quote",
            ),
            (
                &format!("a@x no-touch-required=\"x\" {ED}\n"),
                "unsupported option \"no-touch-required\"",
            ),
            (
                &format!("a@x namespaces=\"git\",,valid-after=\"20200101\" {ED}\n"),
                "unsupported option",
            ),
            (&format!("a@x namespaces=\"git\", {ED}\n"), "trailing comma"),
            (&format!("a@x valid-after=\"2020\" {ED}\n"), "YYYYMMDD"),
            (
                &format!("a@x valid-after=\"20200230Z\" {ED}\n"),
                "no such date",
            ),
            (
                &format!("a@x valid-after=\"20300101Z\",valid-before=\"20200101Z\" {ED}\n"),
                "is not after",
            ),
            (
                &format!("a@x namespaces=\"a\",namespaces=\"b\" {ED}\n"),
                "twice",
            ),
            (&format!("a@x,,b@y {ED}\n"), "empty principal"),
            (&format!("\"a@x {ED}\n"), "missing closing quote"),
            (&format!("a@x namespaces=\"\" {ED}\n"), "empty entry"),
        ];
        for (i, (body, want)) in cases.iter().enumerate() {
            let text = format!("# header\nok@x {ED}\n{body}");
            let err = parse_err(&text);
            assert!(
                err.starts_with("/etc/updater/allowed_signers:3: invalid allowed-signers line"),
                "case {i}: {err}"
            );
            assert!(
                err.contains(want),
                "case {i}: {err:?} should contain {want:?}"
            );
        }
        let err = parse_err("# nothing\n\n");
        assert!(
            err.contains("/etc/updater/allowed_signers: no usable allowed signer"),
            "{err}"
        );
        let err = parse_err(&format!("*@x cert-authority {ED}\n"));
        assert!(err.contains("1 line(s) skipped"), "{err}");
    }

    #[test]
    fn load_reports_missing_and_unreadable_files() {
        let s = Scratch::new();
        let missing = s.path("nope/allowed_signers");
        let err = format!("{:#}", AllowedSigners::load(&missing).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("does not exist; create it"), "{err}");

        let binary = s.path("binary");
        std::fs::write(&binary, [b'a', 0xff]).unwrap();
        let err = format!("{:#}", AllowedSigners::load(&binary).unwrap_err());
        assert!(err.contains("is not UTF-8"), "{err}");

        let err = format!("{:#}", AllowedSigners::load(s.dir.path()).unwrap_err());
        assert!(
            err.contains(&format!(
                "cannot read allowed signers file {}",
                s.dir.path().display()
            )),
            "{err}"
        );
    }
}
