//! Groups of alternative implementations (SPEC §5): of the enabled modules sharing
//! `metadata.group`, only one runs, the first by `group_order` (then name) whose `service_name`
//! (default: the module name) is active per `systemctl is-active --quiet`. The others are on
//! standby; when none is active, none runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::preserve::escape;

/// How long one `systemctl is-active` may take before the service counts as inactive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One group member: its name, `group_order` and service.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub order: i64,
    pub service: String,
}

/// The verdict for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub group: String,
    /// The member that runs, if any is active.
    pub winner: Option<String>,
    /// Every member, in the order they were tried.
    pub members: Vec<String>,
}

impl Resolution {
    /// Why `name` (a member) does not run; `None` for the winner.
    pub fn standby_reason(&self, name: &str) -> Option<String> {
        match &self.winner {
            Some(w) if w == name => None,
            Some(w) => Some(format!(
                "group {}: {} runs instead",
                escape(&self.group),
                escape(w)
            )),
            None => Some(format!(
                "group {}: no member's service is active (tried {})",
                escape(&self.group),
                escape(&self.members.join(", "))
            )),
        }
    }
}

/// Resolves each group (name → members) with `active` as the service probe.
pub fn resolve<F>(groups: BTreeMap<String, Vec<Member>>, mut active: F) -> Vec<Resolution>
where
    F: FnMut(&str) -> bool,
{
    let mut out = Vec::new();
    for (group, mut members) in groups {
        members.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
        let winner = members
            .iter()
            .find(|m| active(&m.service))
            .map(|m| m.name.clone());
        match &winner {
            Some(w) => log::info!(
                "Group {}: running {} (its service is active)",
                escape(&group),
                escape(w)
            ),
            None => log::warn!(
                "Group {}: no active implementation (checked {}); none of them runs",
                escape(&group),
                escape(
                    &members
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            ),
        }
        out.push(Resolution {
            group,
            winner,
            members: members.into_iter().map(|m| m.name).collect(),
        });
    }
    out
}

/// Whether a systemd unit name is safe to pass to `systemctl`: not empty, at most 256 bytes, no
/// leading `-`, no whitespace, `/` or control characters.
pub fn valid_service(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('-')
        && !s
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
}

/// `systemctl is-active --quiet <service>` (found on `PATH`), killed after 5 s. Anything but exit
/// status 0 (including a missing systemctl or an unsafe name) is "not active", with a warning
/// when the probe itself could not run.
pub fn systemctl_is_active(service: &str) -> bool {
    if !valid_service(service) {
        log::warn!(
            "service name {} is not a systemd unit name; counted as inactive",
            escape(service)
        );
        return false;
    }
    let child = Command::new("systemctl")
        .args(["is-active", "--quiet", "--", service])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(Path::new("/"))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "could not run systemctl to probe {}: {e}; counted as inactive",
                escape(service)
            );
            return false;
        }
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                log::warn!(
                    "systemctl is-active {} did not answer in {} s; counted as inactive",
                    escape(service),
                    PROBE_TIMEOUT.as_secs()
                );
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, order: i64) -> Member {
        Member {
            name: name.into(),
            order,
            service: format!("{name}.service"),
        }
    }

    #[test]
    fn first_active_by_order_then_name_wins() {
        let mut groups = BTreeMap::new();
        groups.insert("git".to_string(), vec![m("z", 1), m("b", 2), m("a", 2)]);
        groups.insert("web".to_string(), vec![m("x", 99)]);
        let mut probed = Vec::new();
        let r = resolve(groups, |s| {
            probed.push(s.to_string());
            s != "z.service"
        });
        assert_eq!(probed, ["z.service", "a.service", "x.service"]);
        assert_eq!(r[0].winner.as_deref(), Some("a"));
        assert_eq!(
            r[0].standby_reason("b").unwrap(),
            "group git: a runs instead"
        );
        assert!(r[0].standby_reason("a").is_none());
        assert_eq!(r[1].winner.as_deref(), Some("x"));
    }

    #[test]
    fn unsafe_service_names_are_refused() {
        for bad in ["", "-H", "a b", "a\nb", "a/b"] {
            assert!(!valid_service(bad), "{bad:?}");
        }
        assert!(valid_service("gogs.service"));
    }
}
