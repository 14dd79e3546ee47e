//! The `WWW-Authenticate` challenge of a registry's 401 answer (RFC 7235): its scheme (`Bearer`
//! or `Basic`) and parameters (`realm`, `service`, `scope`).

use anyhow::{bail, Result};

/// One challenge: the scheme, lower-cased, and its parameters (names lower-cased, values as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses one challenge, e.g. `Bearer realm="https://auth.example/token",service="reg",
    /// scope="repository:app:pull"`. Quoted values may hold commas and `\"` escapes.
    pub fn parse(header: &str) -> Result<Challenge> {
        let s = header.trim();
        let (scheme, rest) = match s.find(|c: char| c.is_ascii_whitespace()) {
            Some(i) => (&s[..i], s[i..].trim_start()),
            None => (s, ""),
        };
        if scheme.is_empty() || !scheme.chars().all(is_token_char) {
            bail!("WWW-Authenticate {header:?}: no authentication scheme");
        }
        let mut params = Vec::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
            {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !is_token_char(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            if name.is_empty() || chars.next() != Some('=') {
                bail!("WWW-Authenticate {header:?}: expected name=value parameters");
            }
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(e) => value.push(e),
                            None => break,
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    bail!("WWW-Authenticate {header:?}: unterminated quoted value");
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c.is_ascii_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            params.push((name.to_ascii_lowercase(), value));
        }
        Ok(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge_is_read() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("Service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/nginx:pull"));
    }

    #[test]
    fn quoted_commas_escapes_spaces_and_bare_tokens_are_handled() {
        let c = Challenge::parse(
            r#"bearer  realm = "http://127.0.0.1:1/t" , scope="repository:a/b:pull,push", error=insufficient_scope, x="q\"uote""#,
        )
        .unwrap();
        assert_eq!(c.param("realm"), Some("http://127.0.0.1:1/t"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
        assert_eq!(c.param("x"), Some("q\"uote"));
        assert_eq!(c.param("service"), None);
    }

    #[test]
    fn basic_challenge_and_bare_scheme() {
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        assert_eq!(Challenge::parse("Bearer").unwrap().params, vec![]);
    }

    #[test]
    fn malformed_challenges_are_errors() {
        for bad in [
            "",
            "Bearer realm",
            r#"Bearer realm="open"#,
            "Bearer =x",
            "\"x\" a=b",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
        }
    }
}
