//! Trust checks on new remote commits (SPEC §9).
//!
//! Whoever can push to the updates repository runs code as root on every machine, so with
//! `--require-signed` a new commit is only used if it carries an SSH signature (git's `gpgsig`
//! header holding an armored SSHSIG, namespace `git`) made by a key listed in an OpenSSH
//! allowed-signers file. Everything here is done in-process with the `ssh-key` crate: no `git`,
//! `gpg` or `ssh-keygen` is run, so a machine's PATH cannot change a trust decision.
//!
//! The checks of [`verify_commit`], in order, each refusing with its own [`TrustError`]:
//! 1. the commit has a signature at all ([`TrustError::Unsigned`]);
//! 2. it is an armored SSHSIG that decodes ([`TrustError::Malformed`]; an OpenPGP or X.509
//!    signature is refused here with "not an SSH signature");
//! 3. its namespace is exactly `git` ([`TrustError::WrongNamespace`]);
//! 4. its public key is one of the allowed signers' keys, compared as key material, never by
//!    comment ([`TrustError::UnknownKey`]);
//! 5. that signer line's `namespaces="..."` option, if any, admits `git`
//!    ([`TrustError::NamespaceNotAllowed`]), and its `valid-after` / `valid-before` window
//!    contains the current time ([`TrustError::KeyNotValid`]);
//! 6. the signature verifies over the signed data with the signature's own hash algorithm
//!    (SHA-256 or SHA-512) ([`TrustError::BadSignature`]).
//!
//! # Allowed-signers format
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
//!   field of the matching line is what [`verify_commit`] returns, as `ssh-keygen -Y
//!   find-principals` prints it.
//! - For FIDO (`sk-`) keys the user-presence flag of the signature is not required.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The SSHSIG namespace git signs commits and tags in.
pub const GIT_NAMESPACE: &str = "git";

const SSH_ARMOR: &str = "-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &str = "-----BEGIN PGP SIGNATURE-----";

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
    fn check_validity(&self, now: i64) -> std::result::Result<(), String> {
        if let Some(after) = &self.valid_after {
            if now < after.unix {
                return Err(format!(
                    "is not valid before {} (valid-after=\"{}\")",
                    format_unix(after.unix),
                    after.raw
                ));
            }
        }
        if let Some(before) = &self.valid_before {
            if now > before.unix {
                return Err(format!(
                    "expired at {} (valid-before=\"{}\")",
                    format_unix(before.unix),
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
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        bail!("no such date {year:04}-{month:02}-{day:02}");
    }
    if hour > 23 || minute > 59 || second > 59 {
        bail!("no such time {hour:02}:{minute:02}:{second:02}");
    }
    let mut unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    if !utc {
        // Local time is UTC−12h .. UTC+14h: the instant is between T−14h and T+12h.
        unix += if is_lower { 12 * 3600 } else { -14 * 3600 };
    }
    Ok(TimeBound {
        raw: raw.to_string(),
        unix,
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn format_unix(unix: i64) -> String {
    let t = if unix >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(unix.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(unix.unsigned_abs()))
    };
    match t {
        Some(t) => crate::clock::iso8601(t),
        None => format!("@{unix}"),
    }
}

/// OpenSSH `match_pattern`: `*` matches any run of characters, `?` any single one.
fn match_pattern(s: &[char], p: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some(('*', rest)) => (0..=s.len()).any(|i| match_pattern(&s[i..], rest)),
        Some((&pc, rest)) => match s.split_first() {
            Some((&sc, srest)) if pc == '?' || pc == sc => match_pattern(srest, rest),
            _ => false,
        },
    }
}

/// OpenSSH `match_pattern_list`: true if some pattern matches and no `!pattern` does.
fn match_pattern_list(s: &str, patterns: &[String]) -> bool {
    let s: Vec<char> = s.chars().collect();
    let mut positive = false;
    for p in patterns {
        let (negated, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p.as_str()),
        };
        let p: Vec<char> = p.chars().collect();
        if match_pattern(&s, &p) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// Why a commit was refused. `Display` is one line naming the commit and the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// The commit has no `gpgsig` header.
    Unsigned { commit: String },
    /// The signature is not a decodable SSHSIG (e.g. an OpenPGP signature, broken armor).
    Malformed { commit: String, reason: String },
    /// The signature does not verify over the commit (altered commit or signature, or an
    /// algorithm that cannot be verified).
    BadSignature { commit: String, reason: String },
    /// The signing key is not in the allowed-signers file.
    UnknownKey {
        commit: String,
        /// `SHA256:...`, as `ssh-keygen -l` prints it.
        fingerprint: String,
        file: PathBuf,
    },
    /// The signature was made for another namespace than `git`.
    WrongNamespace { commit: String, namespace: String },
    /// The key is allowed, but its `namespaces=` option does not admit `git`.
    NamespaceNotAllowed {
        commit: String,
        /// The `namespaces=` value of the signer's line.
        namespaces: String,
        signer: Box<SignerLine>,
    },
    /// The key is allowed, but not now (`valid-after` / `valid-before`).
    KeyNotValid {
        commit: String,
        /// e.g. `expired at 2024-01-01T00:00:00Z (valid-before="20240101Z")`.
        reason: String,
        signer: Box<SignerLine>,
    },
}

/// The allowed-signers line whose options refused a commit (boxed in [`TrustError`] to keep
/// the error small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerLine {
    /// The line's principals field.
    pub principal: String,
    /// `SHA256:...` of the key.
    pub fingerprint: String,
    pub file: PathBuf,
    pub line: usize,
}

impl TrustError {
    /// The commit this refusal is about.
    pub fn commit(&self) -> &str {
        match self {
            TrustError::Unsigned { commit }
            | TrustError::Malformed { commit, .. }
            | TrustError::BadSignature { commit, .. }
            | TrustError::UnknownKey { commit, .. }
            | TrustError::WrongNamespace { commit, .. }
            | TrustError::NamespaceNotAllowed { commit, .. }
            | TrustError::KeyNotValid { commit, .. } => commit,
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Unsigned { commit } => {
                write!(f, "commit {commit} is not signed (--require-signed)")
            }
            TrustError::Malformed { commit, reason } => {
                write!(f, "commit {commit}: signature is malformed: {reason}")
            }
            TrustError::BadSignature { commit, reason } => {
                write!(f, "commit {commit}: signature is not valid: {reason}")
            }
            TrustError::UnknownKey {
                commit,
                fingerprint,
                file,
            } => write!(
                f,
                "commit {commit} is signed by an unknown key {fingerprint} (not in {})",
                file.display()
            ),
            TrustError::WrongNamespace { commit, namespace } => write!(
                f,
                "commit {commit}: signature namespace is {namespace:?}, expected {GIT_NAMESPACE:?}"
            ),
            TrustError::NamespaceNotAllowed {
                commit,
                namespaces,
                signer,
            } => write!(
                f,
                "commit {commit} is signed by {} ({}), but {}:{} allows that key only for \
                 namespaces=\"{namespaces}\", which does not include {GIT_NAMESPACE:?}",
                signer.principal,
                signer.fingerprint,
                signer.file.display(),
                signer.line
            ),
            TrustError::KeyNotValid {
                commit,
                reason,
                signer,
            } => write!(
                f,
                "commit {commit} is signed by {} ({}), but that key {reason} ({}:{})",
                signer.principal,
                signer.fingerprint,
                signer.file.display(),
                signer.line
            ),
        }
    }
}

impl std::error::Error for TrustError {}

/// Verifies a git commit's SSH signature at the current time; see [`verify_commit_at`].
pub fn verify_commit(
    commit: &str,
    signature: Option<&[u8]>,
    signed_data: &[u8],
    allowed: &AllowedSigners,
) -> std::result::Result<String, TrustError> {
    verify_commit_at(commit, signature, signed_data, allowed, SystemTime::now())
}

/// Verifies a git commit's SSH signature. `signature` is the `gpgsig` header content (armored
/// `-----BEGIN SSH SIGNATURE-----`), `signed_data` the commit object without that header:
/// exactly the `(signature, signed_data)` of git2's `Repository::extract_signature(oid, None)`
/// (see `git::verify_commit_signature`). `now` is the time signer validity windows are checked at.
/// Returns the principals field of the matching allowed-signers line.
pub fn verify_commit_at(
    commit: &str,
    signature: Option<&[u8]>,
    signed_data: &[u8],
    allowed: &AllowedSigners,
    now: SystemTime,
) -> std::result::Result<String, TrustError> {
    let Some(signature) = signature else {
        return Err(TrustError::Unsigned {
            commit: commit.to_string(),
        });
    };
    let sig = decode_signature(signature).map_err(|reason| TrustError::Malformed {
        commit: commit.to_string(),
        reason,
    })?;
    if sig.namespace() != GIT_NAMESPACE {
        return Err(TrustError::WrongNamespace {
            commit: commit.to_string(),
            namespace: sig.namespace().to_string(),
        });
    }
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let now = unix_seconds(now);

    let line_of = |signer: &AllowedSigner| {
        Box::new(SignerLine {
            principal: signer.principal(),
            fingerprint: fingerprint.clone(),
            file: allowed.path.clone(),
            line: signer.line,
        })
    };
    // The first line with this key that admits it now decides; otherwise the first refusal.
    let mut refusal = None;
    let mut chosen = None;
    for signer in allowed
        .signers
        .iter()
        .filter(|s| s.key.key_data() == sig.public_key())
    {
        if !signer.allows_namespace(GIT_NAMESPACE) {
            refusal.get_or_insert_with(|| TrustError::NamespaceNotAllowed {
                commit: commit.to_string(),
                namespaces: signer.namespaces.as_deref().unwrap_or_default().join(","),
                signer: line_of(signer),
            });
            continue;
        }
        if let Err(reason) = signer.check_validity(now) {
            refusal.get_or_insert_with(|| TrustError::KeyNotValid {
                commit: commit.to_string(),
                reason,
                signer: line_of(signer),
            });
            continue;
        }
        chosen = Some(signer);
        break;
    }
    let Some(signer) = chosen else {
        return Err(refusal.unwrap_or_else(|| TrustError::UnknownKey {
            commit: commit.to_string(),
            fingerprint,
            file: allowed.path.clone(),
        }));
    };

    if let Some(why) = unsupported_key(signer.key.key_data()) {
        return Err(TrustError::BadSignature {
            commit: commit.to_string(),
            reason: why,
        });
    }
    // Checks key and namespace again, hashes `signed_data` with the signature's hash
    // algorithm and verifies the signature over the SSHSIG signed-data blob.
    signer
        .key
        .verify(GIT_NAMESPACE, signed_data, &sig)
        .map_err(|e| TrustError::BadSignature {
            commit: commit.to_string(),
            reason: format!(
                "{} signature ({}) does not verify over the commit: {e}",
                sig.algorithm(),
                sig.hash_alg()
            ),
        })?;
    Ok(signer.principal())
}

/// Why signatures by `key` cannot be verified by this build, if they cannot.
fn unsupported_key(key: &ssh_key::public::KeyData) -> Option<String> {
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

/// Decodes an armored SSHSIG, or says why it is not one.
fn decode_signature(bytes: &[u8]) -> std::result::Result<SshSig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text (invalid UTF-8)".to_string())?;
    let text = text.trim();
    if !text.starts_with(SSH_ARMOR) {
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect::<String>();
        return Err(if text.starts_with(PGP_ARMOR) {
            "not an SSH signature (an OpenPGP signature; sign with gpg.format=ssh)".to_string()
        } else if first.is_empty() {
            "not an SSH signature (empty)".to_string()
        } else {
            format!("not an SSH signature (starts with {first:?})")
        });
    }
    // Git keeps the armor's lines as ssh-keygen wrote them; drop any CRs a transport added.
    let normalized: String = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n");
    SshSig::from_pem(normalized.as_bytes())
        .map_err(|e| format!("cannot decode the SSH signature: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use tempfile::TempDir;

    /// A scratch directory with a private HOME for git and ssh-keygen.
    struct Scratch {
        dir: TempDir,
    }

    impl Scratch {
        fn new() -> Scratch {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("home")).unwrap();
            Scratch { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn cmd(&self, program: &str) -> Command {
            let mut c = Command::new(program);
            c.env("HOME", self.path("home"))
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env_remove("SSH_AUTH_SOCK")
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE");
            c
        }

        fn run(&self, mut c: Command) -> Vec<u8> {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{c:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }

        /// `ssh-keygen -t <kind>` without passphrase; returns (private key path, public line).
        fn keygen(&self, name: &str, kind: &str) -> (PathBuf, String) {
            let key = self.path(name);
            let (kind, bits) = match kind {
                "ecdsa384" => ("ecdsa", Some("384")),
                "rsa" => ("rsa", Some("2048")),
                other => (other, None),
            };
            let mut c = self.cmd("ssh-keygen");
            c.args([
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                &format!("{name}-comment"),
                "-f",
            ])
            .arg(&key);
            if let Some(bits) = bits {
                c.args(["-b", bits]);
            }
            self.run(c);
            let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            (key, public.trim().to_string())
        }

        /// `ssh-keygen -lf key.pub`'s SHA256 fingerprint.
        fn fingerprint(&self, key: &Path) -> String {
            let mut c = self.cmd("ssh-keygen");
            c.arg("-lf").arg(key.with_extension("pub"));
            let out = String::from_utf8(self.run(c)).unwrap();
            out.split_whitespace().nth(1).unwrap().to_string()
        }

        fn git(&self, repo: &Path, args: &[&str]) -> Vec<u8> {
            let mut c = self.cmd("git");
            c.arg("-C")
                .arg(repo)
                .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
                .args(args);
            self.run(c)
        }

        /// A new repository with one empty commit, signed with `key` if given; returns the
        /// repository and the commit's (signature, signed data).
        fn commit(&self, key: Option<&Path>) -> (PathBuf, Option<Vec<u8>>, Vec<u8>) {
            let repo = self.path("repo");
            if !repo.exists() {
                let mut c = self.cmd("git");
                c.args(["init", "-q"]).arg(&repo);
                self.run(c);
            }
            match key {
                Some(key) => {
                    let signing =
                        format!("user.signingkey={}", key.with_extension("pub").display());
                    self.git(
                        &repo,
                        &[
                            "-c",
                            "gpg.format=ssh",
                            "-c",
                            &signing,
                            "commit",
                            "-q",
                            "-S",
                            "--allow-empty",
                            "-m",
                            "msg",
                        ],
                    )
                }
                None => self.git(&repo, &["commit", "-q", "--allow-empty", "-m", "msg"]),
            };
            let (sig, data) = read_commit(&repo);
            (repo, sig, data)
        }

        fn allowed(&self, text: &str) -> AllowedSigners {
            let path = self.path("allowed_signers");
            std::fs::write(&path, text).unwrap();
            AllowedSigners::load(&path).unwrap()
        }
    }

    /// HEAD's (signature, signed data) as read with git2.
    fn read_commit(repo: &Path) -> (Option<Vec<u8>>, Vec<u8>) {
        let r = git2::Repository::open(repo).unwrap();
        let oid = r.head().unwrap().target().unwrap();
        match r.extract_signature(&oid, None) {
            Ok((sig, data)) => (Some(sig.to_vec()), data.to_vec()),
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                let raw = r.odb().unwrap().read(oid).unwrap().data().to_vec();
                (None, raw)
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn head_oid(repo: &Path) -> git2::Oid {
        git2::Repository::open(repo)
            .unwrap()
            .head()
            .unwrap()
            .target()
            .unwrap()
    }

    #[test]
    fn signed_by_allowed_key_is_accepted() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (repo, sig, data) = s.commit(Some(&key));
        let sig = sig.expect("signed commit has a gpgsig header");
        assert!(String::from_utf8_lossy(&sig).starts_with(SSH_ARMOR));
        // The key's comment differs from the file's: keys are compared, not comments.
        let key_only: Vec<&str> = public.split(' ').take(2).collect();
        let allowed = s.allowed(&format!(
            "alice@example.com {} other-comment\n",
            key_only.join(" ")
        ));
        assert_eq!(
            verify_commit("abc123", Some(&sig), &data, &allowed).unwrap(),
            "alice@example.com"
        );

        // The same through the repository helper.
        let r = git2::Repository::open(&repo).unwrap();
        assert_eq!(
            crate::git::verify_commit_signature(&r, head_oid(&repo), &allowed).unwrap(),
            "alice@example.com"
        );

        // git itself agrees with our reading of the file.
        let file = format!("gpg.ssh.allowedSignersFile={}", allowed.path.display());
        s.git(&repo, &["-c", &file, "verify-commit", "HEAD"]);
    }

    #[test]
    fn unsigned_commit_is_refused() {
        let s = Scratch::new();
        let (_key, public) = s.keygen("alice", "ed25519");
        let (repo, sig, data) = s.commit(None);
        assert!(sig.is_none());
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let err = verify_commit("abc123", None, &data, &allowed).unwrap_err();
        assert!(matches!(err, TrustError::Unsigned { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "commit abc123 is not signed (--require-signed)"
        );

        let r = git2::Repository::open(&repo).unwrap();
        let err = crate::git::verify_commit_signature(&r, head_oid(&repo), &allowed).unwrap_err();
        assert!(matches!(err, TrustError::Unsigned { .. }), "{err:?}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_fingerprint() {
        let s = Scratch::new();
        let (alice, _) = s.keygen("alice", "ed25519");
        let (_bob, bob_public) = s.keygen("bob", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&alice));
        let allowed = s.allowed(&format!("bob@example.com {bob_public}\n"));
        let err = verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap_err();
        let fingerprint = s.fingerprint(&alice);
        assert!(fingerprint.starts_with("SHA256:"));
        match &err {
            TrustError::UnknownKey {
                fingerprint: f,
                file,
                ..
            } => {
                assert_eq!(f, &fingerprint);
                assert_eq!(file, &allowed.path);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "commit abc123 is signed by an unknown key {fingerprint} (not in {})",
                allowed.path.display()
            )
        );
    }

    #[test]
    fn signature_for_another_namespace_is_refused() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, _sig, data) = s.commit(Some(&key));
        let data_file = s.path("data");
        std::fs::write(&data_file, &data).unwrap();
        let mut c = s.cmd("ssh-keygen");
        c.args(["-q", "-Y", "sign", "-n", "file", "-f"])
            .arg(&key)
            .arg(&data_file);
        s.run(c);
        let file_sig = std::fs::read(s.path("data.sig")).unwrap();
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let err = verify_commit("abc123", Some(&file_sig), &data, &allowed).unwrap_err();
        assert!(
            matches!(&err, TrustError::WrongNamespace { namespace, .. } if namespace == "file"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "commit abc123: signature namespace is \"file\", expected \"git\""
        );

        // The same data signed for "git" by ssh-keygen directly is accepted.
        let mut c = s.cmd("ssh-keygen");
        c.args(["-q", "-Y", "sign", "-n", "git", "-f"])
            .arg(&key)
            .arg(&data_file);
        std::fs::remove_file(s.path("data.sig")).unwrap();
        s.run(c);
        let git_sig = std::fs::read(s.path("data.sig")).unwrap();
        assert_eq!(
            verify_commit("abc123", Some(&git_sig), &data, &allowed).unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn tampered_commit_is_refused() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, mut data) = s.commit(Some(&key));
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let pos = data.windows(3).position(|w| w == b"msg").unwrap();
        data[pos] ^= 0x01;
        let err = verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("commit abc123: signature is not valid: "),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_foreign_signatures_are_malformed() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&key));
        let allowed = s.allowed(&format!("alice@example.com {public}\n"));
        let reason = |sig: &[u8]| match verify_commit("abc123", Some(sig), &data, &allowed) {
            Err(TrustError::Malformed { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };

        let pgp = b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n";
        assert!(
            reason(pgp).starts_with("not an SSH signature"),
            "{}",
            reason(pgp)
        );
        assert!(reason(b"garbage").starts_with("not an SSH signature"));
        assert!(reason(b"").starts_with("not an SSH signature"));
        assert!(reason(&[0xff, 0xfe]).contains("UTF-8"));
        let bad_base64 =
            b"-----BEGIN SSH SIGNATURE-----\n!!!notbase64!!!\n-----END SSH SIGNATURE-----\n";
        assert!(
            reason(bad_base64).starts_with("cannot decode"),
            "{}",
            reason(bad_base64)
        );

        // A truncated real signature.
        let sig = String::from_utf8(sig.unwrap()).unwrap();
        let mut lines: Vec<&str> = sig.lines().collect();
        lines.remove(2);
        let truncated = lines.join("\n");
        assert!(reason(truncated.as_bytes()).starts_with("cannot decode"));

        let err = verify_commit("abc123", Some(pgp), &data, &allowed).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("commit abc123: signature is malformed: not an SSH signature"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_option_must_admit_git() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&key));
        let sig = sig.as_deref();

        let allowed = s.allowed(&format!("alice@example.com namespaces=\"file\" {public}\n"));
        let err = verify_commit("abc123", sig, &data, &allowed).unwrap_err();
        assert!(
            matches!(&err, TrustError::NamespaceNotAllowed { namespaces, signer, .. } if namespaces == "file" && signer.line == 1),
            "{err:?}"
        );
        assert!(err.to_string().contains("namespaces=\"file\""), "{err}");

        for ok in ["git", "file,git", "g*", "NAMESPACES=\"*\""] {
            let opts = if ok.contains('=') {
                ok.to_string()
            } else {
                format!("namespaces=\"{ok}\"")
            };
            let allowed = s.allowed(&format!("alice@example.com {opts} {public}\n"));
            assert_eq!(
                verify_commit("abc123", sig, &data, &allowed).unwrap(),
                "alice@example.com",
                "{ok}"
            );
        }
        let allowed = s.allowed(&format!(
            "alice@example.com namespaces=\"*,!git\" {public}\n"
        ));
        assert!(matches!(
            verify_commit("abc123", sig, &data, &allowed),
            Err(TrustError::NamespaceNotAllowed { .. })
        ));

        // A later line for the same key that admits git is used.
        let allowed = s.allowed(&format!(
            "file@example.com namespaces=\"file\" {public}\ngit@example.com namespaces=\"git\" {public}\n"
        ));
        assert_eq!(
            verify_commit("abc123", sig, &data, &allowed).unwrap(),
            "git@example.com"
        );
    }

    #[test]
    fn validity_window_is_checked_at_verification_time() {
        let s = Scratch::new();
        let (key, public) = s.keygen("alice", "ed25519");
        let (_repo, sig, data) = s.commit(Some(&key));
        let sig = sig.as_deref();
        let at = |y: i64, m: i64, d: i64| {
            UNIX_EPOCH + Duration::from_secs((days_from_civil(y, m, d) * 86_400) as u64)
        };
        let allowed = s.allowed(&format!(
            "alice@example.com valid-after=\"20200101Z\",valid-before=\"20300101000000Z\" {public}\n"
        ));
        assert!(verify_commit_at("c", sig, &data, &allowed, at(2025, 6, 1)).is_ok());
        let err = verify_commit_at("c", sig, &data, &allowed, at(2031, 1, 1)).unwrap_err();
        assert!(matches!(err, TrustError::KeyNotValid { .. }), "{err:?}");
        assert!(
            err.to_string().contains("expired at 2030-01-01T00:00:00Z"),
            "{err}"
        );
        let err = verify_commit_at("c", sig, &data, &allowed, at(2019, 1, 1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not valid before 2020-01-01T00:00:00Z"),
            "{err}"
        );

        // Local time (no Z): taken at its strictest.
        let allowed = s.allowed(&format!(
            "alice@example.com valid-before=\"20300101\" {public}\n"
        ));
        let bound = allowed.signers[0].valid_before.as_ref().unwrap().unix;
        assert_eq!(bound, days_from_civil(2030, 1, 1) * 86_400 - 14 * 3600);
        let allowed = s.allowed(&format!(
            "alice@example.com valid-after=\"202001011200\" {public}\n"
        ));
        let bound = allowed.signers[0].valid_after.as_ref().unwrap().unix;
        assert_eq!(bound, days_from_civil(2020, 1, 1) * 86_400 + 24 * 3600);
    }

    #[test]
    fn ecdsa_p256_p384_and_rsa_keys_work() {
        for kind in ["ecdsa", "ecdsa384", "rsa"] {
            let s = Scratch::new();
            let (key, public) = s.keygen("k", kind);
            let (_repo, sig, data) = s.commit(Some(&key));
            match kind {
                "ecdsa" => assert!(public.starts_with("ecdsa-sha2-nistp256 "), "{public}"),
                "ecdsa384" => assert!(public.starts_with("ecdsa-sha2-nistp384 "), "{public}"),
                _ => assert!(public.starts_with("ssh-rsa "), "{public}"),
            }
            let allowed = s.allowed(&format!("k@example.com {public}\n"));
            assert_eq!(
                verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap(),
                "k@example.com",
                "{kind}"
            );
            let mut tampered = data.clone();
            tampered.push(b'\n');
            assert!(matches!(
                verify_commit("abc123", sig.as_deref(), &tampered, &allowed),
                Err(TrustError::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn unsupported_key_types_are_refused_clearly() {
        let s = Scratch::new();
        let mut c = s.cmd("ssh-keygen");
        c.args(["-q", "-t", "ecdsa", "-b", "521", "-N", "", "-f"])
            .arg(s.path("big"));
        s.run(c);
        let big = s.path("big");
        let public = std::fs::read_to_string(big.with_extension("pub")).unwrap();
        let (_repo, sig, data) = s.commit(Some(&big));
        let allowed = s.allowed(&format!("big@example.com {public}"));
        let err = verify_commit("abc123", sig.as_deref(), &data, &allowed).unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("ecdsa-sha2-nistp521 keys are not supported"),
            "{err}"
        );
    }

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

    #[test]
    fn pattern_lists_follow_openssh() {
        let list = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(match_pattern_list("git", &list("git")));
        assert!(match_pattern_list("git", &list("file,g?t")));
        assert!(match_pattern_list("git", &list("*")));
        assert!(!match_pattern_list("git", &list("gitx,*it*x")));
        assert!(!match_pattern_list("git", &list("!git,*")));
        assert!(!match_pattern_list("git", &list("!file")));
        assert!(match_pattern_list("git", &list("!file,*")));
    }
}
