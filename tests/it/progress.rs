//! The apply progress display in a real terminal: teeform runs in a pseudo-terminal of a
//! given size, and everything it writes is replayed into a terminal emulator (vt100), frame
//! by frame, as a person would see it, scrollback included.

use std::io::Read;
use std::sync::mpsc;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use teeform::sim::SimConfig;

use crate::harness::{TestEnv, WEB};

/// What the terminal received, in the chunks it arrived in, and the exit code.
struct PtyRun {
    chunks: Vec<Vec<u8>>,
    code: u32,
}

fn run_in_pty(t: &TestEnv, args: &[&str], cols: u16, rows: u16) -> PtyRun {
    let pty = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).expect("a pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_teeform"));
    cmd.args(args);
    cmd.cwd(t.dir.path());
    cmd.env_clear();
    for (k, v) in &t.env {
        cmd.env(k, v);
    }
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(cmd).expect("teeform starts in the pty");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("pty reader");
    let (tx, rx) = mpsc::channel();
    let pump = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let status = child.wait().expect("teeform finishes");
    drop(pty.master);
    let _ = pump.join();
    PtyRun { chunks: rx.try_iter().collect(), code: status.exit_code() }
}

/// Whether a row's text ran past the last column. indicatif pads its lines with spaces to
/// the full width and lets the terminal wrap, which is harmless; text reaching the last
/// column and going on is not.
fn overflows(row: &str, wrapped: bool, cols: u16) -> bool {
    wrapped && row.trim_end().chars().count() >= cols as usize
}

/// Every line the terminal shows or has scrolled away, oldest first, and whether its text
/// ran past the last column.
fn all_lines(p: &mut vt100::Parser) -> Vec<(String, bool)> {
    let (rows, cols) = p.screen().size();
    let (rows, cols) = (rows.get(), cols.get());
    let mut out = Vec::new();
    p.screen_mut().set_scrollback(usize::MAX);
    let back = p.screen().scrollback();
    for off in (1..=back).rev() {
        p.screen_mut().set_scrollback(off);
        let s = p.screen();
        let row = s.rows(0, cols).next().unwrap_or_default();
        let over = overflows(&row, s.row_wrapped(0), cols);
        out.push((row, over));
    }
    p.screen_mut().set_scrollback(0);
    let s = p.screen();
    for (i, row) in s.rows(0, cols).enumerate().take(rows as usize) {
        let over = overflows(&row, s.row_wrapped(i as u16), cols);
        out.push((row, over));
    }
    while out.last().is_some_and(|(l, _)| l.trim().is_empty()) {
        out.pop();
    }
    out
}

fn is_bar(line: &str) -> bool {
    line.trim_start().starts_with("Applying") && line.contains('[')
}

/// A running operation's line: a spinner glyph, then the address.
fn spinner_of(line: &str) -> Option<String> {
    let l = line.trim_start();
    let mut chars = l.chars();
    let glyph = chars.next()?;
    if !('\u{2800}'..='\u{28FF}').contains(&glyph) {
        return None;
    }
    chars.as_str().trim_start().split(|c: char| c == ':' || c.is_whitespace()).next().map(str::to_string)
}

struct Seen {
    /// Most operation lines on screen at once.
    max_spinners: usize,
    /// Most operations counted as running without a line of their own.
    max_more: usize,
    final_lines: Vec<String>,
}

/// Replays the run frame by frame and checks what a person would see at every moment.
fn check_frames(run: &PtyRun, cols: u16, rows: u16) -> Seen {
    let nz = |n: u16| std::num::NonZeroU16::new(n).expect("a terminal has a size");
    let mut p = vt100::Parser::new(nz(rows), nz(cols), 10_000);
    let mut max_spinners = 0;
    let mut max_more = 0;
    for (i, chunk) in run.chunks.iter().enumerate() {
        p.process(chunk);
        let lines = all_lines(&mut p);
        let bars = lines.iter().filter(|(l, _)| is_bar(l)).count();
        assert!(bars <= 1, "frame {i}: {bars} progress bars in view or scrollback:\n{}", dump(&lines));
        let mut spinners: Vec<String> = lines.iter().filter_map(|(l, _)| spinner_of(l)).collect();
        let n = spinners.len();
        spinners.sort();
        spinners.dedup();
        assert_eq!(n, spinners.len(), "frame {i}: an operation shown twice:\n{}", dump(&lines));
        max_spinners = max_spinners.max(n);
        for (l, _) in lines.iter().filter(|(l, _)| is_bar(l)) {
            if let Some(more) = l.split("(and ").nth(1).and_then(|r| r.split(' ').next()) {
                max_more = max_more.max(more.parse().unwrap_or(0));
            }
        }
        // The plan itself is stdout's primary output, written once, not redrawn: only what
        // follows it must fit.
        // So is the summary or error after the display is gone.
        let after_plan = lines.iter().rposition(|(l, _)| l.starts_with("Plan:")).map_or(lines.len(), |i| i + 1);
        let end = lines
            .iter()
            .position(|(l, _)| ["error:", "Apply complete!", "Apply paused:"].iter().any(|s| l.starts_with(s)))
            .unwrap_or(lines.len())
            .max(after_plan);
        if let Some((l, _)) = lines[after_plan..end].iter().find(|(_, wrapped)| *wrapped) {
            panic!("frame {i}: a line wider than {cols} columns wrapped: {l:?}\n{}", dump(&lines));
        }
    }
    let lines = all_lines(&mut p);
    assert!(!lines.iter().any(|(l, _)| is_bar(l) || spinner_of(l).is_some()), "left behind:\n{}", dump(&lines));
    Seen { max_spinners, max_more, final_lines: lines.into_iter().map(|(l, _)| l).collect() }
}

fn dump(lines: &[(String, bool)]) -> String {
    lines.iter().map(|(l, w)| format!("{}|{l}", if *w { "W" } else { " " })).collect::<Vec<_>>().join("\n")
}

const NAMES: &[&str] = &["alpha", "bravo", "charlie", "delta-with-a-rather-long-name-for-wrapping"];

fn manifest(compose: &str) -> String {
    manifest_of(NAMES, compose)
}

fn manifest_of(names: &[&str], compose: &str) -> String {
    let mut m = String::from("cvms:\n");
    for n in names {
        m.push_str(&format!("  {n}:\n    name: {n}-svc\n    compose: {compose}\n    env:\n      MODE: a\n"));
    }
    m
}

fn env() -> TestEnv {
    let mut t = TestEnv::with_config(SimConfig { boot_ms: 1500, restart_ms: 1500, ..Default::default() });
    t.env.remove("TEEFORM_NO_PROGRESS");
    t.write("web.yml", WEB);
    t.write("web2.yml", &WEB.replace("1.27", "1.28"));
    t
}

fn check_apply(cols: u16) {
    let rows = 24;
    let t = env();
    t.manifest(&manifest("web.yml"));
    let run = run_in_pty(&t, &["apply", "--auto-approve"], cols, rows);
    let seen = check_frames(&run, cols, rows);
    assert_eq!(run.code, 0, "{}", seen.final_lines.join("\n"));
    assert_eq!(seen.max_spinners, NAMES.len(), "every running create had its line:\n{}", seen.final_lines.join("\n"));
    for n in NAMES {
        let done =
            seen.final_lines.iter().filter(|l| l.contains(&format!("cvm.{n}")) && l.contains("complete")).count();
        assert_eq!(done, 1, "cvm.{n} reported done once:\n{}", seen.final_lines.join("\n"));
    }
    assert!(seen.final_lines.iter().any(|l| l.contains("Apply complete!")), "{}", seen.final_lines.join("\n"));
    // An update round: each CVM restarts, one status line each.
    t.manifest(&manifest("web2.yml"));
    let run = run_in_pty(&t, &["apply", "--auto-approve"], cols, rows);
    let seen = check_frames(&run, cols, rows);
    assert_eq!(run.code, 0, "{}", seen.final_lines.join("\n"));
    assert_eq!(seen.max_spinners, NAMES.len(), "{}", seen.final_lines.join("\n"));
}

#[test]
fn progress_in_an_80_column_terminal_leaves_no_stale_lines() {
    check_apply(80);
}

#[test]
fn progress_in_a_200_column_terminal_leaves_no_stale_lines() {
    check_apply(200);
}

#[test]
fn progress_without_a_terminal_is_plain_lines() {
    let mut t = env();
    t.env.remove("TEEFORM_NO_PROGRESS");
    t.manifest(&manifest("web.yml"));
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(!r.stderr.contains('\r') && !r.stderr.contains('\u{1b}'), "no redraws or escapes:\n{:?}", r.stderr);
    for n in NAMES {
        assert!(r.stderr.contains(&format!("cvm.{n}: Creation complete")), "{}", r.stderr);
    }
}

#[test]
fn progress_in_a_short_terminal_with_retries_stays_in_one_region() {
    // More operations than the terminal has rows, and retries printed while they run.
    let (cols, rows) = (80, 10);
    let mut t = TestEnv::with_config(SimConfig {
        boot_ms: 1500,
        restart_ms: 1500,
        error_rate: 0.15,
        seed: 11,
        ..Default::default()
    });
    t.env.remove("TEEFORM_NO_PROGRESS");
    t.env.insert("TEEFORM_RETRY_BASE_MS".into(), "20".into());
    t.env.insert("TEEFORM_RETRY_MAX_ATTEMPTS".into(), "10".into());
    t.write("web.yml", WEB);
    let names: Vec<String> = (1..=12).map(|i| format!("node{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    t.manifest(&manifest_of(&names, "web.yml"));
    let run = run_in_pty(&t, &["apply", "--auto-approve"], cols, rows);
    let seen = check_frames(&run, cols, rows);
    // A commit answered 503 is not repeated (it may have happened), so a create may fail.
    assert!(run.code == 0 || run.code == 1, "{}", seen.final_lines.join("\n"));
    // The region leaves a line of margin and the overall bar: 8 operation lines, the other
    // running ones counted on the bar.
    assert_eq!(seen.max_spinners, rows as usize - 2, "{}", seen.final_lines.join("\n"));
    assert!(seen.max_more >= 1, "{}", seen.final_lines.join("\n"));
    assert!(seen.final_lines.iter().any(|l| l.contains("Retrying")), "{}", seen.final_lines.join("\n"));
    for n in &names {
        let ended =
            |l: &&String| l.contains(&format!("cvm.{n}: Creation complete")) || l.contains(&format!("cvm.{n}: failed"));
        assert_eq!(seen.final_lines.iter().filter(ended).count(), 1, "cvm.{n}:\n{}", seen.final_lines.join("\n"));
    }
}
