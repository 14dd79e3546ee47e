//! OpenSSH pattern lists (`match_pattern_list` of OpenSSH's match.c), as used by the
//! `namespaces="..."` option of an allowed-signers line.

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
pub fn match_pattern_list(s: &str, patterns: &[String]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
