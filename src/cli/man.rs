//! The man page, `updater(1)`: clap_mangen's title, NAME, SYNOPSIS, DESCRIPTION and OPTIONS from
//! the clap definitions, plus COMMANDS (each subcommand with its examples, in this one page: no
//! `updater-sync(1)` pages exist), EXIT STATUS, FILES, ENVIRONMENT, EXAMPLES and SEE ALSO.

use anyhow::{Context, Result};
use clap::CommandFactory;
use roff::{bold, italic, roman, Roff};

use super::Cli;

/// The sections of the page, in order (the tests check that each is there).
pub const SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "COMMANDS",
    "OPTIONS",
    "EXIT STATUS",
    "FILES",
    "ENVIRONMENT",
    "EXAMPLES",
    "SEE ALSO",
];

const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success; for check, whether or not updates exist (unless --exit-code).",
    ),
    (
        "1",
        "The run could not proceed: the sync failed or was refused, the lock is held, bad \
         configuration, a malformed global index; for check, also: a module is invalid.",
    ),
    ("2", "Usage error."),
    (
        "3",
        "sync or legacy: some modules failed, were skipped or are invalid, and are at their old \
         copy; the rest applied.",
    ),
    (
        "100",
        "check with --exit-code: updates are available and no module is invalid.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/var/local/lib/updates",
        "The default install root (--modules-path): index.json (the global index: exactly what \
         is installed), modules/NAME/ (the installed modules), the framework files and \
         updateManager.sh (updater's own wrapper).",
    ),
    (
        "<modules-path>/.updater/",
        "updater's state: repo/ (the clone), lock, journal.json (the run in progress), \
         state.json (last commit and each module's last result), machine.json (this machine's \
         enable/disable choices), backup/NAME/ (what rollback puts back), logs/NAME.log, \
         staging/, quarantine/ (see doctor), framework/.",
    ),
    (
        "<modules-path>/.updater/inhibit",
        "While it exists, sync and legacy apply nothing; its content is the reason shown.",
    ),
    (
        "<modules-path>/.updater/labels",
        "KEY=VALUE lines: this machine's labels for metadata.targets.",
    ),
    (
        "<modules-path>/.updater/allowed_signers",
        "The OpenSSH allowed-signers file of --require-signed.",
    ),
    (
        "<modules-path>/.updater/hooks/post-sync.d/",
        "Executables run after every sync.",
    ),
    (
        "/etc/machine-id",
        "This machine's id for phased rollouts and targets, unless --machine-id is given.",
    ),
    (
        "/usr/lib/systemd/system/updater.service, updater.timer",
        "The units of the Debian package: the timer runs updater sync every 15 minutes and \
         writes /var/lib/prometheus/node-exporter/updater.prom (--metrics-file).",
    ),
    (
        "/usr/share/doc/updater/README.md",
        "The full documentation: module index keys, entry points, fleets, security, migrating \
         from the Python orchestrator.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "UPDATER_PYTHON",
        "Python interpreter for index.py modules when --python is not given.",
    ),
    (
        "UPDATER_HOOK_TIMEOUT_SECS",
        "Timeout of each post-sync hook, in seconds.",
    ),
    (
        "UPDATER_NO_FORKSERVER",
        "Set (not empty, not 0): every index.py module runs in a fresh interpreter.",
    ),
    (
        "UPDATER_MACHINE_ID_FILE",
        "Read instead of /etc/machine-id (tests).",
    ),
    (
        "RUST_LOG",
        "Log filter with env_logger's syntax (e.g. debug, or updater::git=trace), laid over \
         the level that -q, -v and -vv set.",
    ),
    (
        "JOURNAL_STREAM",
        "Set by systemd: when it names the stream the log goes to, each line gets an sd-daemon \
         <N> priority prefix and no timestamp (journalctl -p works).",
    ),
    (
        "DOCKER_CONFIG",
        "Directory of the Docker config file (config.json) whose registry credentials Docker \
         Compose modules use; else ~/.docker.",
    ),
    (
        "SSL_CERT_FILE, SSL_CERT_DIR",
        "CA certificates for https remotes (OpenSSL's variables).",
    ),
];

const SEE_ALSO: &[(&str, &str)] = &[
    ("systemctl", "1"),
    ("systemd.timer", "5"),
    ("journalctl", "1"),
    ("ssh-keygen", "1"),
    ("git", "1"),
];

/// The whole page, in roff.
pub fn render() -> Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone()).manual("updater manual");
    let mut page = Vec::new();
    let head = |page: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(page)?;
        man.render_name_section(page)?;
        man.render_synopsis_section(page)?;
        man.render_description_section(page)
    };
    head(&mut page).context("rendering the man page")?;
    page.extend(commands(&cmd).render().into_bytes());
    man.render_options_section(&mut page)
        .context("rendering the man page")?;
    page.extend(tail(&cmd).render().into_bytes());
    Ok(page)
}

/// COMMANDS: every visible subcommand, its arguments, what it does and its examples.
fn commands(cmd: &clap::Command) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["COMMANDS"]);
    r.text([roman(
        "With no command, updater runs sync. Every option below may stand before or after the \
         command.",
    )]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        r.control("TP", []);
        r.text([bold(synopsis(sub))]);
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            r.text([roman(about.to_string())]);
        }
        if let Some(examples) = sub.get_after_help() {
            let lines = example_lines(&examples.to_string());
            if !lines.is_empty() {
                r.control("RS", []);
                no_fill(&mut r, &lines);
                r.control("RE", []);
            }
        }
    }
    r
}

/// `updater NAME ARG…`, with the possible values of an enumerated argument.
fn synopsis(sub: &clap::Command) -> String {
    let mut s = format!("updater {}", sub.get_name());
    for arg in sub.get_positionals() {
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        let name = if !values.is_empty() {
            values.join("|")
        } else {
            arg.get_value_names()
                .and_then(|n| n.first())
                .map(|n| n.to_string())
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
        };
        s.push(' ');
        s.push_str(&name);
    }
    s
}

/// The lines of an `Examples:` block (up to the first blank line), without the heading.
fn example_lines(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Examples:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim_end().to_string())
        .collect()
}

fn no_fill(r: &mut Roff, lines: &[String]) {
    r.control("nf", []);
    for line in lines {
        r.text([roman(line.clone())]);
    }
    r.control("fi", []);
}

fn list(r: &mut Roff, title: &str, items: &[(&str, &str)], term_italic: bool) {
    r.control("SH", [title]);
    for (term, text) in items {
        r.control("TP", []);
        r.text([if term_italic {
            italic(*term)
        } else {
            bold(*term)
        }]);
        r.text([roman(*text)]);
    }
}

/// EXIT STATUS, FILES, ENVIRONMENT, EXAMPLES and SEE ALSO.
fn tail(cmd: &clap::Command) -> Roff {
    let mut r = Roff::new();
    list(&mut r, "EXIT STATUS", EXIT_STATUS, false);
    list(&mut r, "FILES", FILES, true);
    list(&mut r, "ENVIRONMENT", ENVIRONMENT, false);
    r.control("SH", ["EXAMPLES"]);
    let top = cmd
        .get_after_help()
        .map(|h| example_lines(&h.to_string()))
        .unwrap_or_default();
    no_fill(&mut r, &top);
    r.control("PP", []);
    r.text([roman(
        "Each command's own examples are under COMMANDS and in updater COMMAND --help.",
    )]);
    r.control("SH", ["SEE ALSO"]);
    let refs: Vec<_> = SEE_ALSO
        .iter()
        .enumerate()
        .flat_map(|(i, (name, section))| {
            let sep = if i + 1 < SEE_ALSO.len() { "), " } else { ")" };
            [bold(*name), roman(format!("({section}{sep}"))]
        })
        .collect();
    r.text(refs);
    r.control("PP", []);
    r.text([roman(
        "The README, /usr/share/doc/updater/README.md in the Debian package, documents \
         everything in full.",
    )]);
    r
}
