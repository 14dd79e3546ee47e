//! Shell completion: the scripts `updater completions SHELL` prints (clap_complete's, plus, for
//! bash, zsh and fish, completion of installed module names), and the hidden `updater
//! complete-modules` they call for those names (read-only, no lock, one directory listing).

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::config::Config;
use crate::layout::Layout;

/// The hidden subcommand the scripts call for module names.
pub const LISTER: &str = "complete-modules";

/// The subcommands that take an installed module name, and its position among their arguments.
pub const MODULE_ARGS: &[(&str, usize)] = &[
    ("enable", 0),
    ("disable", 0),
    ("rollback", 0),
    ("checksum", 0),
    ("set-branch", 0),
    ("component", 1),
];

/// `updater completions SHELL`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = visible(Cli::command());
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "updater", &mut out);
    let generated = String::from_utf8_lossy(&out).into_owned();
    let text = match shell {
        Shell::Bash => generated + &bash(&cmd),
        Shell::Zsh => zsh(&generated, &cmd),
        Shell::Fish => generated + &fish(&cmd),
        _ => generated,
    };
    text.into_bytes()
}

/// `cmd` without its hidden subcommands, which clap_complete would offer (it completes hidden
/// ones too). clap cannot remove a subcommand, so the command is rebuilt from its parts.
fn visible(cmd: clap::Command) -> clap::Command {
    clap::Command::new("updater")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .groups(cmd.get_groups().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// `updater complete-modules`: the installed module names under `--modules-path`, one a line.
/// A missing install root lists nothing; names that are not module names (and `*.backup`, as in
/// `list`) are left out.
pub fn list_modules(cfg: &Config) -> Result<crate::ExitStatus> {
    let modules = Layout::new(&cfg.modules_path).modules();
    let mut text = String::new();
    for os_name in crate::fs::list_dir(&modules)? {
        let Some(name) = os_name.to_str() else {
            continue;
        };
        if crate::module::valid_name(name)
            && !name.ends_with(".backup")
            && modules.join(name).is_dir()
        {
            text.push_str(name);
            text.push('\n');
        }
    }
    crate::output::write_bytes(crate::output::Stream::Stdout, text.as_bytes());
    Ok(crate::ExitStatus::Success)
}

/// The long and short spellings of the options that take a value (`--modules-path`, `-j`).
fn value_options(cmd: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments().filter(|a| !a.is_positional()) {
        if !arg.get_action().takes_values() {
            continue;
        }
        out.extend(arg.get_long().map(|l| format!("--{l}")));
        out.extend(arg.get_short().map(|s| format!("-{s}")));
    }
    out
}

/// `case` patterns `enable|disable` of the subcommands whose argument `pos` is a module.
fn module_subcommands(pos: usize) -> String {
    MODULE_ARGS
        .iter()
        .filter(|(_, p)| *p == pos)
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join("|")
}

/// Bash: a wrapper around clap's `_updater` that answers module-name positions itself.
fn bash(cmd: &clap::Command) -> String {
    let values = value_options(cmd).join("|");
    let first = module_subcommands(0);
    let second = module_subcommands(1);
    format!(
        r#"
# updater: installed module names for {first} (and component's MODULE), from
# `updater complete-modules` (read-only). Everything else is clap's _updater above.
_updater_installed_modules() {{
    local i root=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --modules-path)
                if [[ "${{COMP_WORDS[i+1]}}" == "=" ]]; then
                    root=(--modules-path "${{COMP_WORDS[i+2]}}")
                else
                    root=(--modules-path "${{COMP_WORDS[i+1]}}")
                fi ;;
            --modules-path=*) root=("${{COMP_WORDS[i]}}") ;;
        esac
    done
    "${{COMP_WORDS[0]}}" "${{root[@]}}" {LISTER} 2>/dev/null
}}

_updater_with_modules() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" sub="" pos=0 skip=0 i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if [[ $skip == 1 ]]; then
            skip=0
            [[ "$w" == "=" ]] && skip=1
            continue
        fi
        case "$w" in
            {values}) skip=1 ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="$w"; else pos=$((pos + 1)); fi ;;
        esac
    done
    if [[ $skip == 0 && "$cur" != -* ]]; then
        case "$sub:$pos" in
            {first_pat}|{second_pat})
                local IFS=$'\n'
                COMPREPLY=($(compgen -W "$(_updater_installed_modules)" -- "$cur"))
                return 0 ;;
        esac
    fi
    _updater "$@"
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _updater_with_modules -o nosort -o bashdefault -o default updater
else
    complete -F _updater_with_modules -o bashdefault -o default updater
fi
"#,
        first_pat = patterns(&first, 0),
        second_pat = patterns(&second, 1),
    )
}

/// `enable:0|disable:0` for a `case` on `"$sub:$pos"`.
fn patterns(subs: &str, pos: usize) -> String {
    subs.split('|')
        .map(|s| format!("{s}:{pos}"))
        .collect::<Vec<_>>()
        .join("|")
}

/// Zsh: clap's script, with the module-name arguments completed by `_updater_modules`.
fn zsh(generated: &str, cmd: &clap::Command) -> String {
    let mut text = String::new();
    let mut current: Option<&str> = None;
    for line in generated.lines() {
        // clap's zsh script opens each subcommand's block with `(NAME)` on a line of its own.
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            current = MODULE_ARGS
                .iter()
                .find(|(s, _)| *s == name)
                .map(|(s, _)| *s);
        }
        let mut line = line.to_string();
        if let Some(sub) = current {
            if let Some(id) = module_arg_id(cmd, sub) {
                let spec = format!("':{id}:_default'");
                if line.contains(&spec) {
                    line = line.replace(&spec, &format!("':{id}:_updater_modules'"));
                }
            }
        }
        if trimmed == "esac" {
            current = None;
        }
        text.push_str(&line);
        text.push('\n');
    }
    let helper = format!(
        r#"
# updater: installed module names, from `updater complete-modules` (read-only).
(( $+functions[_updater_modules] )) ||
_updater_modules() {{
    # The whole command line: inside a subcommand, $words starts at the subcommand and has lost
    # the command and any --modules-path before it.
    local -a line root names
    line=(${{(Q)${{(z)BUFFER}}}})
    # From the updater command on: a wrapper before it (`sudo`, `nice -n 5`, `watch`) is
    # not what to run for the names.
    local c=${{line[(i)(*/|)updater]}}
    (( c <= $#line )) && line=("${{(@)line[c,-1]}}")
    local i=${{line[(I)--modules-path]}}
    if (( i > 0 )); then
        root=(--modules-path "${{line[i+1]}}")
    elif [[ -n ${{line[(r)--modules-path=*]}} ]]; then
        root=("${{line[(r)--modules-path=*]}}")
    fi
    names=(${{(f)"$("${{line[1]}}" "${{root[@]}}" {LISTER} 2>/dev/null)"}})
    compadd -a names
}}

"#
    );
    // Before clap's closing dispatch (`if [ "$funcstack[1]" = "_updater" ]`): autoloaded from
    // fpath, the file runs top to bottom on the first completion and calls _updater there, so
    // _updater_modules must already be defined.
    match text.find("if [ \"$funcstack[1]\" = \"_updater\" ]") {
        Some(at) => text.insert_str(at, &helper),
        None => text.push_str(&helper),
    }
    text
}

/// The id clap gives the module-name argument of `sub` (what its zsh spec is named after).
fn module_arg_id(cmd: &clap::Command, sub: &str) -> Option<String> {
    let (_, pos) = MODULE_ARGS.iter().find(|(s, _)| *s == sub)?;
    let sub = cmd.find_subcommand(sub)?;
    sub.get_positionals()
        .nth(*pos)
        .map(|a| a.get_id().as_str().to_string())
}

/// Fish: module names after the subcommands that take one.
fn fish(cmd: &clap::Command) -> String {
    let mut text = String::from(
        r#"
# updater: installed module names, from `updater complete-modules` (read-only).
function __fish_updater_modules
    set -l root
    set -l words (commandline -opc)
    for i in (seq (count $words))
        switch $words[$i]
            case --modules-path
                set root --modules-path $words[(math $i + 1)]
            case '--modules-path=*'
                set root $words[$i]
        end
    end
    $words[1] $root complete-modules 2>/dev/null
end

# How many arguments (not options, not option values) follow the subcommand.
function __fish_updater_position
    set -l words (commandline -opc)
    set -l n -1
    set -l skip 0
    for w in $words[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case VALUE_OPTIONS
                set skip 1
            case '-*'
            case '*'
                set n (math $n + 1)
        end
    end
    echo $n
end
"#,
    )
    .replace("VALUE_OPTIONS", &value_options(cmd).join(" "));
    for (sub, pos) in MODULE_ARGS {
        text.push_str(&format!(
            "complete -c updater -n \"__fish_updater_using_subcommand {sub}; and test (__fish_updater_position) -eq {pos}\" -f -a \"(__fish_updater_modules)\"\n"
        ));
    }
    text
}
