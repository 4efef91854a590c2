//! A roll in the plan's text: one block for the updates of a replicated CVM's instances.

use super::*;

/// A rolling update of a replicated CVM's instances: one block, the first instance's diff.
/// `made`: how many of its surge instances the plan makes (the others a paused roll left).
/// Returns its heading.
pub(super) fn roll(out: &mut String, p: &Palette, r: &Roll, first: &Change, made: usize) -> String {
    let n = r.instances.len();
    let mut block = String::new();
    change(&mut block, p, first);
    let heading = heading(first);
    let s = r.surge.len();
    // More than `max_surge`: a paused roll made them under a larger one; kept till the end.
    let lowered = if s > r.max_surge as usize { format!("; max_surge is now {}", r.max_surge) } else { String::new() };
    let surge = match (s, made) {
        (0, _) => String::new(),
        (s, m) if m == s => format!(", {} (made, then deleted)", plural(s, "surge instance")),
        (s, 0) => format!(
            ", {} (left by a paused roll: kept until the roll ends, then deleted{lowered})",
            plural(s, "surge instance")
        ),
        (s, m) => format!(
            ", {} ({m} made, {} left by a paused roll; all deleted when the roll ends{lowered})",
            plural(s, "surge instance"),
            s - m
        ),
    };
    let rolled = format!(
        "# {} will be updated in-place: rolls {n} instance{}, at most {} unavailable{surge}",
        r.address,
        if n == 1 { "" } else { "s" },
        r.max_unavailable
    );
    let block = in_roll(&block, r).replacen(&p.bold(&heading), &p.bold(&rolled), 1);
    out.push_str(block.trim_end_matches('\n'));
    out.push('\n');
    let names: Vec<&str> = r.instances.iter().map(Address::as_str).collect();
    let gates = if first.health.is_some() { "runs and passes its health check" } else { "runs" };
    let _ = writeln!(
        out,
        "    {} {} restart{} ({}), {} at a time; each batch starts once the one before {gates}\n",
        p.cyan("note:"),
        r.restarts,
        if r.restarts == 1 { "" } else { "s" },
        names.join(", "),
        (r.max_unavailable + r.max_surge).min(n as u32)
    );
    for a in &r.surge {
        let _ = writeln!(
            out,
            "  {}\n  {} cvm \"{}\" {{\n        # (surge instance: destroyed once the last batch passes)\n    }}\n",
            p.bold(&format!("# {a} will be destroyed when the roll ends")),
            symbol(p, Action::Delete),
            a.key()
        );
    }
    rolled
}

/// That note in a roll's block: the instance restarts, the app stays up as its policy says.
pub(super) fn in_roll(block: &str, r: &Roll) -> String {
    let mu = r.max_unavailable;
    let serving = match (mu, r.surge.len()) {
        (0, 0) => "no instance of the app is unavailable".to_string(),
        (0, s) => format!("with {} standing in, no instance of the app is unavailable", plural(s, "surge instance")),
        (m, _) => format!("at most {} of the app unavailable at once", plural(m as usize, "instance")),
    };
    block.replacen(RESTART_NOTE, &format!("restarts the instance: one update with one restart; {serving}"), 1)
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
