//! What the Debian package ships, from the binary that generates it: the man page's sections,
//! examples in every subcommand's help, and the completion of installed module names in bash,
//! zsh and fish (real shells driving the scripts `updater completions SHELL` prints). The package
//! itself (cargo-deb, lintian, `dpkg -i`) is built and installed by `.ci/run`
//! (`dist/debian/ci.sh`).

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The man page's sections, in order: `.SH` lines.
fn man_sections(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|s| s.trim_matches('"').replace("\\-", "-").to_string())
        .collect()
}

#[test]
fn man_page_has_the_standard_sections_in_order() {
    let root = InstallRoot::new();
    let out = updater_env(&root).arg("man").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let page = stdout_of(&out);
    let want = [
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
    let got = man_sections(&page);
    let positions: Vec<Option<usize>> = want
        .iter()
        .map(|w| got.iter().position(|g| g == w))
        .collect();
    assert!(
        positions.iter().all(Option::is_some),
        "sections {got:?} lack some of {want:?}"
    );
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "sections out of order: {got:?}"
    );
    assert!(
        !got.iter().any(|s| s == "EXTRA"),
        "examples belong in EXAMPLES: {got:?}"
    );
    for code in ["0", "1", "2", "3", "100"] {
        assert!(
            page.contains(&format!(".TP\n\\fB{code}\\fR")),
            "EXIT STATUS lacks {code}"
        );
    }
}

#[test]
fn man_page_refers_to_no_page_that_is_not_shipped() {
    let root = InstallRoot::new();
    let page = stdout_of(&updater_env(&root).arg("man").output().unwrap());
    // clap_mangen's default SUBCOMMANDS section names updater-sync(1) and the like; none exist.
    assert!(
        !page.contains("updater\\-sync") && !page.contains("updater-sync"),
        "{page}"
    );
    let see_also = page.split(".SH \"SEE ALSO\"").nth(1).expect("SEE ALSO");
    assert!(see_also.contains("systemctl"), "{see_also}");
    assert!(!see_also.contains("updater\\-"), "{see_also}");
    // Every command is described in the page itself, with its examples.
    for sub in subcommands(&root) {
        assert!(
            page.contains(&format!("\\fBupdater {}", sub.replace('-', "\\-"))),
            "COMMANDS lacks {sub}"
        );
    }
}

#[test]
#[ignore = "needs groff; .ci/run installs it and runs these (cargo test --test it -- --ignored)"]
fn man_page_renders_without_groff_warnings() {
    let root = InstallRoot::new();
    let page = updater_env(&root).arg("man").output().unwrap().stdout;
    let path = root.home.path().join("updater.1");
    std::fs::write(&path, page).unwrap();
    let out = Command::new("groff")
        .args(["-ww", "-man", "-Tutf8", "-z"])
        .arg(&path)
        .output()
        .expect("groff (groff-base) is installed");
    assert!(out.status.success(), "{}", dump(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
}

/// The visible subcommands, from the top-level help's `Commands:` list.
fn subcommands(root: &InstallRoot) -> Vec<String> {
    let help = stdout_of(&updater_env(root).arg("-h").output().unwrap());
    let subs: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues on a line indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_string)
        .collect();
    assert!(subs.len() >= 14, "{help}");
    assert!(!subs.iter().any(|s| s == "complete-modules"), "{help}");
    subs
}

#[test]
fn every_subcommand_help_has_examples() {
    let root = InstallRoot::new();
    for sub in subcommands(&root) {
        let out = updater_env(&root).args([&sub, "--help"]).output().unwrap();
        assert_eq!(code(&out), 0, "{sub}: {}", dump(&out));
        let text = stdout_of(&out);
        let examples: Vec<&str> = text
            .lines()
            .skip_while(|l| l.trim() != "Examples:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.trim_start().starts_with("updater "))
            .collect();
        assert!(
            examples
                .iter()
                .any(|l| l.contains(&format!("updater {sub}"))),
            "`updater {sub} --help` has no example of {sub}:\n{text}"
        );
    }
}

/// An install root with modules `adblock` and `website`, and entries that are not modules.
fn root_with_modules() -> InstallRoot {
    let root = InstallRoot::new();
    for dir in ["adblock", "website", "old.backup", ".hidden"] {
        std::fs::create_dir_all(root.path().join("modules").join(dir)).unwrap();
    }
    root.write("modules/notes.txt", "not a module\n");
    root
}

#[test]
fn complete_modules_lists_installed_names_and_changes_nothing() {
    let root = root_with_modules();
    let before = root.snapshot();
    let out = updater_at(&root).arg("complete-modules").output().unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert_eq!(stdout_of(&out), "adblock\nwebsite\n");
    assert_eq!(root.snapshot(), before, "complete-modules wrote something");
    assert!(!root.state_dir().exists(), "no state directory, no lock");

    let empty = InstallRoot::new();
    let out = updater_env(&empty)
        .args(["--modules-path"])
        .arg(empty.path().join("missing"))
        .arg("complete-modules")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    assert_eq!(stdout_of(&out), "");
}

#[test]
fn completion_and_man_output_hold_no_log_line_whatever_rust_log_says() {
    let root = root_with_modules();
    for args in [
        vec!["complete-modules"],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        // A `$RUST_LOG` updater warns about (and `-v`): the records go to stderr, which the
        // completion scripts discard, never into the names or the generated files.
        let out = updater_at(&root)
            .env("RUST_LOG", "a=b=c")
            .arg("-v")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", dump(&out));
        assert!(
            !stdout_of(&out).contains("[WARNING]") && !stdout_of(&out).contains("[DEBUG]"),
            "{args:?}: a log line in the output: {}",
            dump(&out)
        );
        assert!(
            stderr_of(&out).contains("a=b=c"),
            "{args:?}: {}",
            dump(&out)
        );
        if args == ["complete-modules"] {
            assert_eq!(stdout_of(&out), "adblock\nwebsite\n");
        }
    }
}

/// Writes `updater completions SHELL` beside `root` and returns its path.
fn script(root: &InstallRoot, shell: &str) -> std::path::PathBuf {
    let out = updater_env(root)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", dump(&out));
    let path = root.home.path().join(format!("completion.{shell}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// A directory holding an `updater` symlink to the binary under test, for PATH.
fn bin_dir(root: &InstallRoot) -> std::path::PathBuf {
    let dir = root.home.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("updater");
    if !link.exists() {
        std::os::unix::fs::symlink(updater_bin(), &link).unwrap();
    }
    dir
}

fn path_with(dir: &Path) -> String {
    format!("{}:/usr/local/bin:/usr/bin:/bin", dir.display())
}

/// What bash's completion function offers for `words` (the last one is being completed).
fn bash_complete(root: &InstallRoot, script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         spec=$(complete -p updater)\n\
         fn=${{spec#*-F }}; fn=${{fn%% *}}\n\
         \"$fn\" updater \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" ")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .env("PATH", path_with(&bin_dir(root)))
        .current_dir(root.home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", dump(&out));
    stdout_of(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_installed_module_names() {
    let root = root_with_modules();
    let script = script(&root, "bash");
    let mp = root.path().to_str().unwrap().to_string();
    let names = vec!["adblock".to_string(), "website".to_string()];
    for words in [
        vec!["updater", "--modules-path", &mp, "enable", ""],
        vec!["updater", "--modules-path", &mp, "disable", ""],
        vec!["updater", "rollback", "--modules-path", &mp, ""],
        vec!["updater", "--modules-path", &mp, "component", "disable", ""],
    ] {
        assert_eq!(bash_complete(&root, &script, &words), names, "{words:?}");
    }
    let words = ["updater", "--modules-path", &mp, "enable", "w"];
    assert_eq!(bash_complete(&root, &script, &words), ["website"]);
    // Anything else is clap's completion: subcommands, and nothing more after the name.
    let words = ["updater", "--modules-path", &mp, "sta"];
    assert_eq!(bash_complete(&root, &script, &words), ["status"]);
    let words = ["updater", "--modules-path", &mp, "enable", "adblock", ""];
    let after = bash_complete(&root, &script, &words);
    assert!(!after.iter().any(|w| w == "website"), "{after:?}");
}

#[test]
#[ignore = "needs fish; .ci/run installs it and runs these (cargo test --test it -- --ignored)"]
fn fish_completes_installed_module_names() {
    let root = root_with_modules();
    let script = script(&root, "fish");
    let mp = root.path().display().to_string();
    for line in [
        format!("updater --modules-path {mp} enable "),
        format!("updater --modules-path {mp} disable "),
        format!("updater rollback --modules-path {mp} "),
        format!("updater --modules-path {mp} component enable "),
    ] {
        let out = Command::new("fish")
            .arg("--no-config")
            .arg("-c")
            .arg(format!(
                "source '{}'; complete -C '{line}'",
                script.display()
            ))
            .env("PATH", path_with(&bin_dir(&root)))
            .env("HOME", root.home.path())
            .current_dir(root.home.path())
            .output()
            .expect("fish is installed");
        assert!(out.status.success(), "{}", dump(&out));
        let got: Vec<String> = stdout_of(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect();
        assert_eq!(got, ["adblock", "website"], "{line:?}");
    }
}

#[test]
#[ignore = "needs zsh; .ci/run installs it and runs these (cargo test --test it -- --ignored)"]
fn zsh_completes_installed_module_names() {
    let root = root_with_modules();
    let script = script(&root, "zsh");
    let text = std::fs::read_to_string(&script).unwrap();
    // Each subcommand that takes a module has its argument completed by _updater_modules.
    for sub in [
        "enable",
        "disable",
        "rollback",
        "checksum",
        "set-branch",
        "component",
    ] {
        let block = text
            .split(&format!("\n({sub})\n"))
            .nth(1)
            .and_then(|b| b.split(";;").next())
            .unwrap_or_else(|| panic!("no ({sub}) block"));
        assert!(block.contains(":_updater_modules'"), "{sub}: {block}");
    }
    // Autoloaded from fpath, the file runs top to bottom and calls _updater at its end: the
    // helper must be defined before that call.
    let defined = text
        .find("_updater_modules() {")
        .expect("_updater_modules defined");
    let dispatch = text
        .find("if [ \"$funcstack[1]\" = \"_updater\" ]")
        .expect("clap's dispatch");
    assert!(
        defined < dispatch,
        "_updater_modules is defined after the dispatch"
    );
    let mp = root.path().display().to_string();
    // _updater_modules itself, in a real zsh, with compadd standing in for the completion
    // system: it must offer the installed names under the --modules-path of the line.
    for words in [
        format!("updater --modules-path '{mp}' enable "),
        format!("updater --modules-path='{mp}' rollback a"),
    ] {
        let program = format!(
            "compdef() {{ : }}\n\
             source '{}'\n\
             compadd() {{ [[ $1 == -a ]] && print -l -- ${{(P)2}} }}\n\
             BUFFER={words:?}\n\
             _updater_modules\n",
            script.display()
        );
        let out = Command::new("zsh")
            .arg("-f")
            .arg("-c")
            .arg(program)
            .env("PATH", path_with(&bin_dir(&root)))
            .current_dir(root.home.path())
            .output()
            .expect("zsh is installed");
        assert!(out.status.success(), "{}", dump(&out));
        assert_eq!(stdout_of(&out), "adblock\nwebsite\n", "{words}");
    }
}

#[test]
#[ignore = "needs zsh; .ci/run installs it and runs these (cargo test --test it -- --ignored)"]
fn zsh_asks_updater_for_module_names_when_a_wrapper_command_comes_first() {
    let root = root_with_modules();
    let script = script(&root, "zsh");
    let mp = root.path().display().to_string();
    // `nice updater ...`: the names come from updater, not from running the wrapper
    // (`nice --modules-path ... complete-modules`; `watch` or `sudo` would hang the shell).
    for words in [
        format!("nice updater --modules-path '{mp}' enable "),
        format!("nice -n 5 ./updater --modules-path='{mp}' disable "),
    ] {
        let program = format!(
            "compdef() {{ : }}\n\
             source '{}'\n\
             compadd() {{ [[ $1 == -a ]] && print -l -- ${{(P)2}} }}\n\
             BUFFER={words:?}\n\
             _updater_modules\n",
            script.display()
        );
        let out = Command::new("zsh")
            .arg("-f")
            .arg("-c")
            .arg(program)
            .env("PATH", path_with(&bin_dir(&root)))
            .current_dir(bin_dir(&root))
            .output()
            .expect("zsh is installed");
        assert!(out.status.success(), "{}", dump(&out));
        assert_eq!(stdout_of(&out), "adblock\nwebsite\n", "{words}");
    }
}

#[test]
#[ignore = "needs zsh; .ci/run installs it and runs these (cargo test --test it -- --ignored)"]
fn zsh_completes_module_names_in_an_interactive_shell() {
    let root = root_with_modules();
    let script = script(&root, "zsh");
    // An interactive zsh in a pseudo-terminal (zsh/zpty), with the script autoloaded from fpath
    // by compinit as a packaged one is: typing `disable w<TAB>` must complete to `website`.
    let fpath = root.home.path().join("zfunc");
    std::fs::create_dir_all(&fpath).unwrap();
    std::fs::copy(&script, fpath.join("_updater")).unwrap();
    let zdotdir = root.home.path().join("zdot");
    std::fs::create_dir_all(&zdotdir).unwrap();
    std::fs::write(
        zdotdir.join(".zshrc"),
        format!(
            "fpath=('{}' $fpath)\nautoload -Uz compinit && compinit -u\nPS1='> '\n",
            fpath.display()
        ),
    )
    .unwrap();
    let mp = root.path().display();
    // Each read blocks until its pattern shows; a completion that never comes hangs until the
    // command's timeout and fails the test.
    let driver = format!(
        "zmodload zsh/zpty\n\
         zpty z \"ZDOTDIR='{}' zsh -i\"\n\
         zpty -r z out '*> '\n\
         zpty -w -n z $'updater --modules-path {mp} disable w\\t'\n\
         zpty -r z out '*website*'\n\
         zpty -d z\n\
         print -r -- completed\n",
        zdotdir.display()
    );
    let mut cmd = assert_cmd::Command::new("zsh");
    cmd.arg("-f")
        .arg("-c")
        .arg(driver)
        .env("PATH", path_with(&bin_dir(&root)))
        .env("HOME", root.home.path())
        .env("TERM", "xterm")
        .current_dir(root.home.path())
        .timeout(std::time::Duration::from_secs(60));
    let out = cmd.output().unwrap();
    assert_eq!(stdout_of(&out).trim(), "completed", "{}", dump(&out));
}
