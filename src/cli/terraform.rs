//! The spellings a Terraform user's fingers know, read before clap parses the command line.
//!
//! Terraform writes long flags with one dash (`-var x=4`, `-out=plan.bin`, `-json`,
//! `-auto-approve`); clap would read `-var` as the short flags `-v -a -r`. Every single-dash
//! word whose name (before any `=`) is a long flag of teeform's — any command's, taken from
//! the clap definition itself, so flags added later are covered too — is rewritten to the
//! double-dash form. Terraform's global `-chdir=DIR` becomes `-C DIR`; `-input=false` is
//! dropped (teeform never waits for input without a terminal). A Terraform flag teeform has
//! no counterpart for is answered with what to do instead; any other single-dash word is
//! left for clap to explain, with a hint naming the spelling teeform would accept.
//!
//! Nothing after `--` is touched, nor a word that is the value of the flag before it.

use std::collections::BTreeSet;
use std::ffi::OsString;

/// Terraform flags with no teeform counterpart, and what to do instead.
const NO_COUNTERPART: &[(&str, &str)] = &[
    (
        "lock",
        "teeform always locks the state while it works on it; `--lock-timeout 60s` waits for another run instead of failing",
    ),
    (
        "backend-config",
        "teeform's backend is `backend: local|postgres` in the manifest (or --backend); PostgreSQL reads TEEFORM_PG_CONN from the environment",
    ),
    ("compact-warnings", "teeform has no compact warnings; `-q` hides warnings and notes"),
    ("upgrade", "teeform has no providers to upgrade; `teeform images upgrade` moves pinned OS images"),
];

/// What rewriting found: the arguments to parse, or an answer for a Terraform flag teeform
/// does not have.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewritten {
    Args(Vec<OsString>),
    /// An error message and its hint.
    NoCounterpart {
        flag: String,
        hint: String,
    },
}

/// Every long flag name of `cmd` and its subcommands, and those that take a value.
fn long_flags(cmd: &clap::Command) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut all = BTreeSet::from(["help".to_string(), "version".to_string()]);
    let mut valued = BTreeSet::new();
    fn walk(cmd: &clap::Command, all: &mut BTreeSet<String>, valued: &mut BTreeSet<String>) {
        for a in cmd.get_arguments() {
            let takes_value = a.get_action().takes_values();
            for l in a.get_long_and_visible_aliases().into_iter().flatten() {
                all.insert(l.to_string());
                if takes_value && !a.is_require_equals_set() {
                    valued.insert(l.to_string());
                }
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, all, valued);
        }
    }
    walk(cmd, &mut all, &mut valued);
    (all, valued)
}

/// Rewrites Terraform's single-dash spellings (see the module docs). `args` includes the
/// program name.
pub fn rewrite(args: Vec<OsString>, cmd: &clap::Command) -> Rewritten {
    let (longs, valued) = long_flags(cmd);
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    let mut value_next = false;
    let mut rest = false;
    for arg in iter {
        if rest || value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        if let Some(long) = text.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or_default();
            value_next = !long.contains('=') && valued.contains(name);
            out.push(arg);
            continue;
        }
        let Some(word) = text.strip_prefix('-').filter(|w| w.len() > 1) else {
            out.push(arg);
            continue;
        };
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        if longs.contains(name) {
            value_next = value.is_none() && valued.contains(name);
            out.push(format!("-{text}").into());
        } else if name == "chdir" {
            match value {
                Some(v) => out.extend(["-C".into(), OsString::from(v)]),
                None => {
                    out.push("-C".into());
                    value_next = true;
                }
            }
        } else if name == "input" && matches!(value, Some("false") | Some("true") | None) {
            // teeform never prompts without a terminal (apply then needs --auto-approve).
        } else if let Some((_, hint)) = NO_COUNTERPART.iter().find(|(n, _)| *n == name) {
            return Rewritten::NoCounterpart { flag: format!("-{name}"), hint: hint.to_string() };
        } else {
            out.push(arg);
        }
    }
    Rewritten::Args(out)
}

/// A hint for clap's "unexpected argument" error about a single-dash word that names no
/// teeform flag: teeform's spelling is two dashes, and whether it has such a flag at all.
pub fn unknown_flag_hint(args: &[OsString], cmd: &clap::Command, err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    if err.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(bad)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let (longs, _) = long_flags(cmd);
    // clap names the first unknown short of a cluster (`-a` for `-var-fil`, whose `-v` is
    // `--verbose`): the word is the first single-dash word holding that letter.
    let letter = bad.strip_prefix('-').filter(|l| l.chars().count() == 1 && !l.starts_with('-'));
    let word = letter.and_then(|l| {
        args.iter().skip(1).filter_map(|a| a.to_str()).take_while(|a| *a != "--").find(|a| {
            a.len() > 2
                && a.starts_with('-')
                && !a.starts_with("--")
                && a.split('=').next().unwrap_or_default().contains(l)
        })
    });
    let name = match word {
        Some(w) => w.trim_start_matches('-').split('=').next().unwrap_or_default().to_string(),
        None => bad.strip_prefix("--")?.split('=').next().unwrap_or_default().to_string(),
    };
    let close = longs
        .iter()
        .map(|l| (strsim::normalized_damerau_levenshtein(&name, l), l))
        .filter(|(s, _)| *s >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| l.clone());
    Some(match close {
        Some(l) => format!("did you mean `--{l}`? (`teeform COMMAND --help` lists a command's flags)"),
        None => format!(
            "teeform has no `--{name}` flag{}; `teeform COMMAND --help` lists a command's flags",
            if word.is_some() {
                " (it spells long flags with two dashes, and reads Terraform's one-dash forms of its own)"
            } else {
                ""
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run(args: &[&str]) -> Rewritten {
        let args = std::iter::once("teeform").chain(args.iter().copied()).map(OsString::from).collect();
        rewrite(args, &crate::cli::Cli::command())
    }

    fn args(args: &[&str]) -> Vec<String> {
        match run(args) {
            Rewritten::Args(a) => a.into_iter().skip(1).map(|a| a.into_string().unwrap()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn terraform_single_dash_flags_become_teeform_long_flags() {
        assert_eq!(
            args(&["plan", "-var", "x=4", "-var=y=5", "-out=p.bin", "-json", "-detailed-exitcode", "-lock-timeout=5m"]),
            ["plan", "--var", "x=4", "--var=y=5", "--out=p.bin", "--json", "--detailed-exitcode", "--lock-timeout=5m"]
        );
        assert_eq!(args(&["apply", "-auto-approve", "p.bin"]), ["apply", "--auto-approve", "p.bin"]);
        assert_eq!(args(&["plan", "-refresh=false"]), ["plan", "--refresh=false"]);
        assert_eq!(args(&["plan", "-var-file", "prod.tfvars"]), ["plan", "--var-file", "prod.tfvars"]);
        // Terraform's global option and a flag teeform needs none of.
        assert_eq!(args(&["-chdir=deploy", "plan", "-input=false"]), ["-C", "deploy", "plan"]);
        assert_eq!(args(&["-chdir", "deploy", "plan"]), ["-C", "deploy", "plan"]);
    }

    #[test]
    fn short_flags_values_and_words_after_double_dash_are_left_alone() {
        assert_eq!(args(&["-C", "dir", "-qv", "plan", "-f", "x.yaml"]), ["-C", "dir", "-qv", "plan", "-f", "x.yaml"]);
        // The value of a flag is never a flag, even when it looks like one.
        assert_eq!(args(&["plan", "--out", "-json"]), ["plan", "--out", "-json"]);
        assert_eq!(args(&["plan", "-out", "-json"]), ["plan", "--out", "-json"]);
        assert_eq!(args(&["import", "cvm.web", "--", "-json"]), ["import", "cvm.web", "--", "-json"]);
        // Not a flag of teeform's: left for clap, which explains it.
        assert_eq!(args(&["plan", "-nonsense"]), ["plan", "-nonsense"]);
    }

    #[test]
    fn terraform_flags_without_a_counterpart_are_answered() {
        match run(&["apply", "-lock=false"]) {
            Rewritten::NoCounterpart { flag, hint } => {
                assert_eq!(flag, "-lock");
                assert!(hint.contains("--lock-timeout"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// The flags README's *Terraform's spellings work* paragraph names, as (works, has no
    /// counterpart): each as written there, in backticks.
    fn readme_flags() -> (Vec<String>, Vec<String>) {
        let readme = include_str!("../../README.md").replace('\n', " ");
        let start = readme.find("**Terraform's spellings work:**").expect("README has the paragraph");
        let para = &readme[start..];
        let para = &para[..para.find("instead.").expect("the paragraph ends")];
        let (works, none) = para.split_once("has no counterpart").expect("both lists");
        let flags = |t: &str| -> Vec<String> {
            // Terraform's flags; not teeform's own short ones (`-C`) named beside them.
            t.split('`').skip(1).step_by(2).filter(|f| f.starts_with('-') && f.len() > 2).map(str::to_string).collect()
        };
        (flags(works), flags(none))
    }

    #[test]
    fn readme_lists_the_terraform_flags_as_they_are() {
        use clap::Parser;
        let (works, none) = readme_flags();
        assert!(works.len() >= 10 && !none.is_empty(), "{works:?} {none:?}");
        for flag in &works {
            // A flag with its value, spelt as the README spells it, on a command that takes it.
            let words: Vec<String> = flag.split_whitespace().map(|w| w.replace('\'', "")).collect();
            let parses = ["plan", "apply"].iter().any(|command| {
                let mut line: Vec<&str> = words.iter().map(String::as_str).collect();
                // `-chdir` is global: before the command.
                line.insert(if flag.starts_with("-chdir") { line.len() } else { 0 }, command);
                match run(&line) {
                    Rewritten::Args(a) => crate::cli::Cli::try_parse_from(&a).is_ok(),
                    Rewritten::NoCounterpart { .. } => false,
                }
            });
            assert!(parses, "README says {flag} works, but neither plan nor apply takes it");
        }
        let mut listed: Vec<&str> =
            none.iter().map(|f| f.trim_start_matches('-').split('=').next().unwrap_or_default()).collect();
        listed.sort_unstable();
        let mut have: Vec<&str> = NO_COUNTERPART.iter().map(|(f, _)| *f).collect();
        have.sort_unstable();
        assert_eq!(listed, have, "README's list of Terraform flags without a counterpart");
    }

    #[test]
    fn every_rewritten_command_line_parses() {
        use clap::Parser;
        for line in [
            &["plan", "-var", "web_vcpu=4", "-out=p.bin", "-detailed-exitcode", "-lock-timeout=5m", "-parallelism=3"][..],
            &["plan", "-json", "-refresh=false", "-destroy"],
            &["apply", "-auto-approve", "-var-file=a.tfvars"],
            &["-chdir=deploy", "output", "-json"],
        ] {
            let a = match run(line) {
                Rewritten::Args(a) => a,
                other => panic!("{other:?}"),
            };
            crate::cli::Cli::try_parse_from(&a).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }

    #[test]
    fn an_unknown_single_dash_flag_gets_a_hint_that_does_not_point_elsewhere() {
        use clap::Parser;
        let cmd = crate::cli::Cli::command();
        let argv: Vec<OsString> = ["teeform", "plan", "-bogus-flag"].iter().map(OsString::from).collect();
        let e = crate::cli::Cli::try_parse_from(&argv).unwrap_err();
        let h = unknown_flag_hint(&argv, &cmd, &e).unwrap();
        assert!(h.contains("no `--bogus-flag`"), "{h}");
        let argv: Vec<OsString> = ["teeform", "plan", "--detailed-exitcod"].iter().map(OsString::from).collect();
        let e = crate::cli::Cli::try_parse_from(&argv).unwrap_err();
        let h = unknown_flag_hint(&argv, &cmd, &e).unwrap();
        assert!(h.contains("--detailed-exitcode"), "{h}");
        // `-v` is a short flag of teeform's, so clap complains of the `-a` after it.
        let argv: Vec<OsString> = ["teeform", "plan", "-var-fil", "x"].iter().map(OsString::from).collect();
        let e = crate::cli::Cli::try_parse_from(&argv).unwrap_err();
        let h = unknown_flag_hint(&argv, &cmd, &e).unwrap();
        assert!(h.contains("did you mean `--var-file`"), "{h}");
    }
}
