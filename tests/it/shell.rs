//! The terminal contract: stdout carries only primary output; a reader that goes away ends
//! a command quietly; colour and verbosity follow the flags.

use std::process::Stdio;

use crate::harness::{TestEnv, WEB};

fn project() -> TestEnv {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    t
}

#[test]
fn a_closed_stdout_ends_a_command_quietly_with_141() {
    let t = project();
    t.run(&["apply", "--auto-approve"]).ok();
    // `teeform show --json | head -1`, with the reader gone before teeform writes: the
    // write fails at once, whatever the size of the output.
    for args in [
        &["show", "--json"][..],
        &["show"],
        &["plan"],
        &["plan", "--json"],
        &["state", "list"],
        &["state", "show", "cvm.web"],
        &["output"],
        &["completions", "bash"],
        &["validate", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out =
            t.command(args).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).output().expect("teeform runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: nothing to say once the reader is gone: {stderr}");
        // `output` with no outputs in state writes nothing to stdout, so it succeeds.
        let want = if args == ["output"] { 0 } else { 141 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {stderr}");
    }
}

#[test]
fn colour_follows_the_flag_over_no_color_and_quiet_keeps_only_errors_and_output() {
    let t = project();
    let esc = '\u{1b}';
    let plain = t.run(&["plan"]);
    plain.ok();
    assert!(!plain.stdout.contains(esc) && !plain.stderr.contains(esc), "NO_COLOR is set in tests");
    assert!(plain.stdout.contains("Plan: 1 to add"));
    let coloured = t.run(&["--color", "always", "plan"]);
    coloured.ok();
    assert!(coloured.stdout.contains(esc), "--color always beats NO_COLOR:\n{}", coloured.stdout);
    assert!(!t.run(&["--color", "never", "plan"]).ok().stdout.contains(esc));
    assert!(!t.run(&["--no-color", "--color", "always", "plan"]).ok().stdout.contains(esc), "--no-color wins");

    let quiet = t.run(&["-q", "apply", "--auto-approve"]);
    quiet.ok();
    assert!(quiet.stdout.contains("Plan: 1 to add"), "the plan is primary output: {}", quiet.stdout);
    assert!(!quiet.stderr.contains("Creating") && !quiet.stderr.contains("Creation complete"), "{}", quiet.stderr);
    assert!(quiet.stderr.contains("Apply complete!"), "the result is still said: {}", quiet.stderr);
    // Errors are never quiet.
    let err = t.run(&["-q", "state", "show", "cvm.nope"]);
    err.code(1);
    assert!(err.stderr.contains("error: `cvm.nope` is not in state"), "{}", err.stderr);
    assert!(t.run(&["-q", "-v", "plan"]).code(1).stderr.contains("cannot be used with"));
}

#[test]
fn verbose_logs_each_request_through_redaction() {
    let t = project();
    let r = t.run(&["-v", "plan"]);
    r.ok();
    assert!(r.stderr.contains("http request"), "{}", r.stderr);
    assert!(!r.stderr.contains(crate::harness::KEY), "{}", r.stderr);
    assert!(!t.run(&["plan"]).ok().stderr.contains("http request"));
}
