//! The fork-server's socket protocol, typed: what a run sends ([`Request`]), what the server
//! answers ([`Reply`]), each with its wire format, and the line-based connection ([`ServerConn`]).
//! `server.py` documents the Python side.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

/// Longest line the fork-server may send.
const MAX_SERVER_LINE: usize = 4096;

/// What a run sends the fork-server, one line each.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Request {
    /// The run: the shim's request (see `shim.py`) plus `env`, `out` and `err`, as one JSON line.
    Run(serde_json::Map<String, serde_json::Value>),
    /// Answer with the module process's pid (after [`Reply::Ready`]).
    Go,
    /// Run the module now (after [`Reply::Pid`], once its process group is recorded).
    Start,
}

impl Request {
    /// The line on the wire, without its newline. JSON escapes control characters, so a run's
    /// request is one line whatever its paths hold.
    pub(super) fn format(&self) -> String {
        match self {
            Request::Run(map) => serde_json::Value::Object(map.clone()).to_string(),
            Request::Go => "go".to_string(),
            Request::Start => "start".to_string(),
        }
    }
}

/// What the fork-server (or the module process it forked) answers, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// `ready`: the module process is set up; nothing of the module ran yet.
    Ready,
    /// `error <why>`: the module process could not be set up (nothing ran; it exits).
    Error(String),
    /// `pid <n>`: the module process's pid and process group (a valid pid, never 1); it runs
    /// the module on [`Request::Start`].
    Pid(rustix::process::Pid),
    /// `status <wait status>`: the module process ended.
    Status(ExitStatus),
    /// A `status ` line whose status is not a number.
    BadStatus(String),
    /// Anything else, as received (a `pid` line without a usable pid among them).
    Unknown(String),
}

impl Reply {
    /// Reads one line (without its newline).
    pub(super) fn parse(line: &str) -> Reply {
        if line == "ready" {
            return Reply::Ready;
        }
        if let Some(why) = line.strip_prefix("error ") {
            return Reply::Error(why.to_string());
        }
        if let Some(pid) = line
            .strip_prefix("pid ")
            .and_then(|pid| pid.trim().parse::<i32>().ok())
            // `Pid::from_raw` wants no negative number (it asserts so in debug builds).
            .filter(|&raw| raw > 1)
            .and_then(rustix::process::Pid::from_raw)
        {
            return Reply::Pid(pid);
        }
        if let Some(status) = line.strip_prefix("status ") {
            return match status.trim().parse::<i32>() {
                Ok(raw) => Reply::Status(ExitStatus::from_raw(raw)),
                Err(_) => Reply::BadStatus(line.to_string()),
            };
        }
        Reply::Unknown(line.to_string())
    }

    /// The line on the wire, without its newline (what the server sends; tests).
    #[cfg(test)]
    pub(super) fn format(&self) -> String {
        match self {
            Reply::Ready => "ready".to_string(),
            Reply::Error(why) => format!("error {why}"),
            Reply::Pid(pid) => format!("pid {}", pid.as_raw_nonzero()),
            Reply::Status(status) => format!("status {}", status.into_raw()),
            Reply::BadStatus(line) | Reply::Unknown(line) => line.clone(),
        }
    }
}

/// A run's connection to the fork-server: lines both ways.
pub(super) struct ServerConn {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl ServerConn {
    pub(super) fn new(stream: UnixStream) -> Self {
        ServerConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends `request` as one line.
    pub(super) fn send(&mut self, request: &Request) -> io::Result<()> {
        let line = request.format();
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.stream.write_all(&bytes)
    }

    /// The next line, without its newline; `None` at the end of the stream; a `TimedOut` error
    /// once `deadline` has passed.
    pub(super) fn recv(&mut self, deadline: Option<Instant>) -> io::Result<Option<String>> {
        loop {
            if let Some(at) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..at]).into_owned()));
            }
            if self.pending.len() > MAX_SERVER_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    Some(left)
                }
            };
            self.stream.set_read_timeout(timeout)?;
            let mut buf = [0u8; 512];
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(read) => self.pending.extend_from_slice(&buf[..read]),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_into_their_kinds() {
        let pid = |raw| rustix::process::Pid::from_raw(raw).expect("pid");
        assert_eq!(Reply::parse("ready"), Reply::Ready);
        assert_eq!(
            Reply::parse("error ValueError: bad dir"),
            Reply::Error("ValueError: bad dir".to_string())
        );
        assert_eq!(Reply::parse("pid 4242"), Reply::Pid(pid(4242)));
        assert_eq!(Reply::parse("pid  17 "), Reply::Pid(pid(17)));
        assert_eq!(
            Reply::parse("status 0"),
            Reply::Status(ExitStatus::from_raw(0))
        );
        assert_eq!(
            Reply::parse("status 9"),
            Reply::Status(ExitStatus::from_raw(9)),
            "a raw wait status: killed by signal 9"
        );
        assert_eq!(
            Reply::parse("status x"),
            Reply::BadStatus("status x".to_string())
        );
    }

    #[test]
    fn replies_that_are_not_the_protocol_stay_unknown() {
        // pid 1 would make a timeout kill signal every process we may signal; 0 and negative
        // pids name groups: none of them is a module process.
        for line in [
            "pid 1",
            "pid 0",
            "pid -5",
            "pid x",
            "pid",
            "ready ",
            "READY",
            "",
            "go",
            "error",
            "status",
            "hello pid 12",
        ] {
            assert_eq!(
                Reply::parse(line),
                Reply::Unknown(line.to_string()),
                "{line:?}"
            );
        }
    }

    #[test]
    fn replies_round_trip_through_their_wire_form() {
        let pid = rustix::process::Pid::from_raw(123).expect("pid");
        for reply in [
            Reply::Ready,
            Reply::Error("OSError: no such file".to_string()),
            Reply::Pid(pid),
            Reply::Status(ExitStatus::from_raw(3 << 8)),
            Reply::BadStatus("status ?".to_string()),
            Reply::Unknown("something else".to_string()),
        ] {
            assert_eq!(Reply::parse(&reply.format()), reply);
        }
    }

    #[test]
    fn requests_are_one_line_whatever_the_paths_hold() {
        assert_eq!(Request::Go.format(), "go");
        assert_eq!(Request::Start.format(), "start");
        let mut map = serde_json::Map::new();
        map.insert("dir".into(), "/srv/a\nb\rc\u{0}d".into());
        map.insert("args".into(), serde_json::Value::Null);
        let line = Request::Run(map.clone()).format();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(back, serde_json::Value::Object(map));
    }

    #[test]
    fn a_connection_carries_requests_and_replies_as_lines() {
        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        let mut conn = ServerConn::new(ours);
        conn.send(&Request::Go).expect("send");
        let mut got = [0u8; 3];
        theirs.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"go\n");
        theirs.write_all(b"ready\npid 77\nstat").expect("write");
        assert_eq!(conn.recv(None).expect("recv").as_deref(), Some("ready"));
        assert_eq!(
            conn.recv(None)
                .map(|line| line.map(|line| Reply::parse(&line)))
                .expect("recv"),
            Some(Reply::Pid(rustix::process::Pid::from_raw(77).expect("pid")))
        );
        theirs.write_all(b"us 0\n").expect("write");
        assert_eq!(conn.recv(None).expect("recv").as_deref(), Some("status 0"));
        drop(theirs);
        assert_eq!(conn.recv(None).expect("end"), None);
    }

    #[test]
    fn a_connection_gives_up_on_an_endless_line_and_at_its_deadline() {
        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        let mut conn = ServerConn::new(ours);
        let err = conn
            .recv(Some(Instant::now()))
            .expect_err("deadline already passed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        theirs
            .write_all(&vec![b'x'; MAX_SERVER_LINE + 600])
            .expect("write");
        let err = conn.recv(None).expect_err("line too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
