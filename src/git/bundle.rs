//! Offline bundles: `--repo-url PATH.bundle` (a file made by `git bundle create`, v2 or v3).
//! libgit2 has no bundle transport, so the header is read here (capped in size), the
//! prerequisites are checked against the clone, and the pack that follows is indexed into the
//! clone's object database; the sync then goes on exactly as after a fetch (trust checks,
//! reset).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::{Oid, Repository};

use super::url::local_path_of;

/// The largest header accepted (signature, capabilities, prerequisites, refs): a file that
/// does not end its header by then is not a bundle we read.
pub const MAX_HEADER: u64 = 4 << 20;

/// What a bundle's header says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Header {
    /// Commits the receiving repository must already have.
    pub prerequisites: Vec<Oid>,
    /// `(refname, oid)` in file order.
    pub refs: Vec<(String, Oid)>,
}

/// The bundle file `url` names, if it is one: a plain path or `file://` URL that is a regular
/// file or ends in `.bundle` (a missing `.bundle` file is then reported by name).
pub fn bundle_path(url: &str) -> Option<PathBuf> {
    let path = local_path_of(url)?;
    let is_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
    (is_file || path.extension().is_some_and(|e| e == "bundle")).then_some(path)
}

fn parse_oid(hex: &str, path: &Path, line: usize) -> Result<Oid> {
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{}: line {line} of the bundle header does not start with a 40-digit object id",
            path.display()
        );
    }
    Oid::from_str(hex).map_err(|e| anyhow!("{}: line {line}: {e}", path.display()))
}

/// Reads the header from `reader` (left positioned at the pack). `path` names the file in
/// errors.
pub(super) fn read_header(reader: &mut impl BufRead, path: &Path) -> Result<Header> {
    let mut limited = reader.take(MAX_HEADER);
    let mut line = Vec::new();
    let mut next_line = |line: &mut Vec<u8>| -> Result<bool> {
        line.clear();
        limited
            .read_until(b'\n', line)
            .with_context(|| format!("reading {}", path.display()))?;
        if line.last() != Some(&b'\n') {
            return Ok(false);
        }
        line.pop();
        Ok(true)
    };
    if !next_line(&mut line)? {
        bail!(
            "{} is not a git bundle (empty, or no header line)",
            path.display()
        );
    }
    let version3 = match line.as_slice() {
        b"# v2 git bundle" => false,
        b"# v3 git bundle" => true,
        _ => bail!(
            "{} is not a git bundle of version 2 or 3 (its first line is not \"# v2 git bundle\" \
             or \"# v3 git bundle\"; make it with `git bundle create`)",
            path.display()
        ),
    };
    let mut header = Header {
        prerequisites: Vec::new(),
        refs: Vec::new(),
    };
    let mut n = 1;
    loop {
        if !next_line(&mut line)? {
            bail!(
                "{}: the bundle header is truncated or longer than {} MiB (no blank line ends it)",
                path.display(),
                MAX_HEADER >> 20
            );
        }
        n += 1;
        if line.is_empty() {
            break;
        }
        let text = std::str::from_utf8(&line).map_err(|_| {
            anyhow!(
                "{}: line {n} of the bundle header is not UTF-8",
                path.display()
            )
        })?;
        if let Some(cap) = text.strip_prefix('@') {
            if !version3 || !header.refs.is_empty() || !header.prerequisites.is_empty() {
                bail!(
                    "{}: line {n}: a capability ({text}) outside a v3 bundle's capability lines",
                    path.display()
                );
            }
            match cap {
                "object-format=sha1" => {}
                "object-format=sha256" => bail!(
                    "{}: the bundle holds a sha256 repository; only sha1 repositories are \
                     supported",
                    path.display()
                ),
                other => bail!(
                    "{}: the bundle needs the capability {other:?}, which updater does not \
                     support (make the bundle without --filter)",
                    path.display()
                ),
            }
        } else if let Some(rest) = text.strip_prefix('-') {
            let hex = rest.split(' ').next().unwrap_or_default();
            header.prerequisites.push(parse_oid(hex, path, n)?);
        } else {
            let (hex, name) = text.split_once(' ').ok_or_else(|| {
                anyhow!(
                    "{}: line {n} of the bundle header is not `<object id> <ref name>`",
                    path.display()
                )
            })?;
            header
                .refs
                .push((name.to_string(), parse_oid(hex, path, n)?));
        }
    }
    if header.refs.is_empty() {
        bail!("{}: the bundle names no refs", path.display());
    }
    Ok(header)
}

/// The branch to take from a bundle, and its tip: `branch` when given, else the branch HEAD
/// points at, else the only branch.
fn choose_branch(header: &Header, branch: Option<&str>, path: &Path) -> Result<(String, Oid)> {
    let heads: Vec<(&str, Oid)> = header
        .refs
        .iter()
        // A name git would refuse (control characters, `..`) is no branch we take or print.
        .filter(|(name, _)| git2::Reference::is_valid_name(name))
        .filter_map(|(name, oid)| name.strip_prefix("refs/heads/").map(|b| (b, *oid)))
        .collect();
    let names = || {
        let mut n: Vec<&str> = heads.iter().map(|(b, _)| *b).collect();
        n.sort_unstable();
        n.dedup();
        n.join(", ")
    };
    if let Some(wanted) = branch {
        return match heads.iter().find(|(b, _)| *b == wanted) {
            Some((b, oid)) => Ok((b.to_string(), *oid)),
            None if heads.is_empty() => bail!(
                "branch '{wanted}' not found in the bundle {}: it holds no branches",
                path.display()
            ),
            None => bail!(
                "branch '{wanted}' not found in the bundle {} (it has: {})",
                path.display(),
                names()
            ),
        };
    }
    let head = header
        .refs
        .iter()
        .find(|(n, _)| n == "HEAD")
        .map(|(_, oid)| *oid);
    let by_head: Vec<&(&str, Oid)> = heads.iter().filter(|(_, oid)| Some(*oid) == head).collect();
    match (by_head.as_slice(), heads.as_slice()) {
        ([(b, oid)], _) | ([], [(b, oid)]) => Ok((b.to_string(), *oid)),
        (_, []) => bail!("the bundle {} holds no branches", path.display()),
        _ => bail!(
            "the bundle {} holds several branches ({}); pass --branch",
            path.display(),
            names()
        ),
    }
}

/// Reads the bundle at `path` into `repo`: checks its header and prerequisites, indexes its
/// pack (only when the tip is not here yet) and returns the branch, its tip, and whether
/// objects were added. Nothing but new objects is written: refs and the work tree are left to
/// the caller, after the trust checks.
pub(super) fn load(
    repo: &Repository,
    path: &Path,
    branch: Option<&str>,
) -> Result<(String, Oid, bool)> {
    let file =
        File::open(path).with_context(|| format!("opening the bundle {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let header = read_header(&mut reader, path)?;
    let (branch, tip) = choose_branch(&header, branch, path)?;
    if repo.find_commit(tip).is_ok() {
        return Ok((branch, tip, false));
    }
    let missing: Vec<String> = header
        .prerequisites
        .iter()
        .filter(|oid| repo.find_commit(**oid).is_err())
        .map(Oid::to_string)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the bundle {} needs commits this machine does not have ({}): it was made for a \
             machine further along; make a full bundle (`git bundle create FILE BRANCH`) or one \
             starting at the commit this machine last applied",
            path.display(),
            missing.join(", ")
        );
    }
    let odb = repo
        .odb()
        .context("opening the object database of the clone")?;
    let mut writer = odb
        .packwriter()
        .context("starting to index the bundle's pack")?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        writer
            .write_all(&buf[..n])
            .with_context(|| format!("{}: the bundle's pack is corrupt", path.display()))?;
    }
    writer.commit().with_context(|| {
        format!(
            "{}: the bundle's pack is truncated or corrupt",
            path.display()
        )
    })?;
    if repo.find_commit(tip).is_err() {
        bail!(
            "{}: the bundle's pack does not hold its tip {tip}",
            path.display()
        );
    }
    Ok((branch, tip, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn parse(text: &str) -> Result<Header> {
        read_header(&mut text.as_bytes(), Path::new("x.bundle"))
    }

    #[test]
    fn v2_and_v3_headers_are_read() {
        let h = parse(&format!(
            "# v2 git bundle\n-{A} msg\n{B} refs/heads/main\n\nPACK"
        ))
        .unwrap();
        assert_eq!(h.prerequisites, vec![Oid::from_str(A).unwrap()]);
        assert_eq!(
            h.refs,
            vec![("refs/heads/main".into(), Oid::from_str(B).unwrap())]
        );
        let h = parse(&format!(
            "# v3 git bundle\n@object-format=sha1\n{B} refs/heads/main\n{B} HEAD\n\n"
        ))
        .unwrap();
        assert_eq!(h.refs.len(), 2);
        let (b, _) = choose_branch(&h, None, Path::new("x")).unwrap();
        assert_eq!(b, "main");
    }

    #[test]
    fn bad_headers_are_refused_with_the_file_name() {
        for (text, needle) in [
            ("", "not a git bundle"),
            ("# v4 git bundle\n\n", "version 2 or 3"),
            (
                &format!("# v3 git bundle\n@object-format=sha256\n{B} HEAD\n\n"),
                "sha256",
            ),
            (
                &format!("# v3 git bundle\n@filter=blob:none\n{B} HEAD\n\n"),
                "filter=blob:none",
            ),
            (
                &format!("# v2 git bundle\n@object-format=sha1\n{B} HEAD\n\n"),
                "capability",
            ),
            (&format!("# v2 git bundle\n{B} refs/heads/x\n"), "truncated"),
            ("# v2 git bundle\nzz refs/heads/x\n\n", "40-digit"),
            ("# v2 git bundle\n\n", "no refs"),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("x.bundle"), "{text:?}: {e}");
        }
    }

    #[test]
    fn header_longer_than_the_cap_is_refused() {
        let mut text = String::from("# v2 git bundle\n");
        let line = format!("-{A} padding\n");
        while (text.len() as u64) <= MAX_HEADER {
            text.push_str(&line);
        }
        text.push_str(&format!("{B} refs/heads/main\n\n"));
        let e = format!("{:#}", parse(&text).unwrap_err());
        assert!(e.contains("longer than 4 MiB"), "{e}");
    }

    #[test]
    fn several_branches_without_head_need_branch() {
        let h = parse(&format!(
            "# v2 git bundle\n{A} refs/heads/a\n{B} refs/heads/b\n\n"
        ))
        .unwrap();
        let e = choose_branch(&h, None, Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("--branch"), "{e}");
        assert_eq!(choose_branch(&h, Some("b"), Path::new("x")).unwrap().0, "b");
        assert!(choose_branch(&h, Some("c"), Path::new("x")).is_err());
    }

    #[test]
    fn branch_names_git_refuses_are_not_taken() {
        let h = parse(&format!(
            "# v2 git bundle\n{A} refs/heads/a..b\n{B} refs/heads/x\u{1b}y\n\n"
        ))
        .unwrap();
        let e = format!("{:#}", choose_branch(&h, None, Path::new("x")).unwrap_err());
        assert!(e.contains("no branches"), "{e}");
        assert!(choose_branch(&h, Some("a..b"), Path::new("x")).is_err());
    }
}
