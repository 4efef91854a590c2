//! The human rendering of a plan, in Terraform's shape.
//!
//! Invariant: rendering reads only the [`Plan`]; it never recomputes what a change means.

use std::fmt::Write as _;

use super::{Action, Attention, AttrChange, Change, Drift, Mode, Plan, Problem, Reason, Roll};
use crate::model::schema::{SCHEMA, Type};
use crate::model::{Address, Attr, EnvVal};
use crate::style::Palette;
use text::{Eol, Markers, crlf_to_lf, is_yaml, marker, text_diff, visible};

mod roll;
mod text;
mod unmanaged;

pub(super) use unmanaged::unmanaged;

fn symbol(p: &Palette, a: Action) -> String {
    match a {
        Action::Create => p.green("+"),
        Action::Update => p.yellow("~"),
        Action::Replace => format!("{}{}", p.red("-/"), p.green("+")),
        Action::Delete => p.red("-"),
    }
}

const SENSITIVE: &str = "(sensitive value)";
const UNKNOWN: &str = "(known after apply)";

/// Renders the whole plan, coloured with `p` (`Palette::plain()` for none).
pub fn render(plan: &Plan, p: &Palette) -> String {
    let mut out = String::new();
    preamble(&mut out, p, plan);
    if plan.mode == Mode::RefreshOnly {
        refresh_only(&mut out, p, plan);
        return out;
    }
    redigested(&mut out, p, plan);
    if !plan.has_changes() {
        if !plan.attention.is_empty() {
            attention(&mut out, p, plan);
            let _ = writeln!(out, "{} {}", p.bold("No changes to apply,"), needs_attention(plan.attention.len()));
            return out;
        }
        out.push_str(&p.bold("No changes."));
        out.push_str(" Your infrastructure matches the configuration.\n");
        return out;
    }
    actions(&mut out, p, plan);
    if plan.outputs_changed {
        outputs(&mut out, p, plan);
    }
    attention(&mut out, p, plan);
    summary(&mut out, p, plan);
    out
}

/// The plan's warnings and notes, then what changed outside teeform.
fn preamble(out: &mut String, p: &Palette, plan: &Plan) {
    for w in &plan.warnings {
        let _ = writeln!(out, "{} {w}", p.yellow("warning:"));
    }
    for n in &plan.notes {
        let _ = writeln!(out, "{} {n}", p.cyan("note:"));
    }
    if !plan.warnings.is_empty() || !plan.notes.is_empty() {
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "{}\n", p.bold("Objects have changed outside of teeform:"));
        for d in &plan.drift {
            drift(out, p, d);
        }
        if plan.mode != Mode::RefreshOnly {
            out.push_str("Unless you have made equivalent changes to your manifest, the actions below undo or respond to these changes.\n\n");
        }
    }
    if !plan.unmanaged.is_empty() {
        let _ = writeln!(out, "{}\n", p.bold("Instances of managed apps that teeform does not manage:"));
        for u in &plan.unmanaged {
            unmanaged(out, p, u);
        }
        out.push_str("They are not part of this plan: teeform neither adopts nor deletes them.\n\n");
    }
}

/// A refresh-only plan: CVMs needing attention, then what applying it would record.
fn refresh_only(out: &mut String, p: &Palette, plan: &Plan) {
    attention(out, p, plan);
    if plan.drift.is_empty() && !plan.attention.is_empty() {
        let n = plan.attention.len();
        let _ = writeln!(
            out,
            "Applying this refresh-only plan would record the run state of {n} CVM{} (above); no CVM is changed.",
            if n == 1 { "" } else { "s" }
        );
    } else if plan.drift.is_empty() {
        out.push_str(&p.bold("No changes."));
        out.push_str(" Your infrastructure still matches the state.\n");
    } else {
        let _ = writeln!(
            out,
            "Applying this refresh-only plan would update the state for {} object(s); no CVM is changed.",
            plan.drift.len()
        );
    }
}

/// The changes, the moves and the protections recorded anew.
fn actions(out: &mut String, p: &Palette, plan: &Plan) {
    if !plan.changes.is_empty() || !plan.moved.is_empty() || !plan.protection.is_empty() {
        out.push_str("teeform will perform the following actions:\n\n");
        for c in &plan.changes {
            shown_change(out, p, plan, c);
        }
        for m in plan.moved.iter().filter(|m| !plan.changes.iter().any(|c| c.address == m.to)) {
            let _ = writeln!(out, "  {}", p.bold(&format!("# {} has moved to {}", m.from, m.to)));
            let _ = writeln!(out, "    cvm \"{}\" {{", m.to.key());
            out.push_str("        # (the same CVM under its new address: state only, no cloud call)\n    }\n\n");
        }
        for x in &plan.protection {
            let _ = writeln!(
                out,
                "  {}\n\n",
                p.bold(&format!("# {}: state records lifecycle.prevent_destroy = {}", x.address, x.prevent_destroy))
            );
        }
    }
}

/// The summary line (`Plan: 1 to add, …`) and, for replacements nobody asked for, why apply
/// refuses the plan.
fn summary(out: &mut String, p: &Palette, plan: &Plan) {
    out.push_str(&summary_line(plan, p));
    out.push('\n');
    let unasked: Vec<&str> = plan.needs_consent().map(|c| c.address.as_str()).collect();
    if !unasked.is_empty() {
        let flags: Vec<String> = unasked.iter().map(|a| format!("--replace {a}")).collect();
        let _ = writeln!(
            out,
            "\n{} apply refuses this plan as it is: it replaces {}, which nobody asked for. Name each replacement ({}) or consent to all with --allow-replace.",
            p.yellow("warning:"),
            unasked.join(", "),
            flags.join(" ")
        );
    }
}

/// `Plan: 1 to add, 0 to change, 0 to destroy.` with the restart, on-chain, move and attention
/// counts that apply; no line break.
pub(super) fn summary_line(plan: &Plan, p: &Palette) -> String {
    let mut out = String::new();
    let (add, change, destroy) = plan.summary();
    let _ = write!(out, "{} {add} to add, {change} to change, {destroy} to destroy.", p.bold("Plan:"));
    let restarts = plan.restarts();
    if restarts > 0 {
        let _ = write!(out, " {restarts} CVM restart{}.", if restarts == 1 { "" } else { "s" });
    }
    // One registration per app and hash: the instances of a replicated CVM share it.
    let onchain = plan
        .changes
        .iter()
        .flat_map(|c| c.reasons.iter().map(move |r| (c, r)))
        .filter_map(|(c, r)| match r {
            Reason::OnChainRegistration(n) if n.allowed != Some(true) => Some((c.address.key(), &n.compose_hash)),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if onchain > 0 {
        let _ = write!(out, " {onchain} on-chain registration{}.", if onchain == 1 { "" } else { "s" });
    }
    if !plan.moved.is_empty() {
        let n = plan.moved.len();
        let _ = write!(out, " {n} CVM{} moved in state.", if n == 1 { "" } else { "s" });
    }
    if !plan.attention.is_empty() {
        let n = plan.attention.len();
        let _ =
            write!(out, " {n} CVM{} need{} attention.", if n == 1 { "" } else { "s" }, if n == 1 { "s" } else { "" });
    }
    out
}

/// Secret digests applying writes again in this run's mode (the values compare equal).
fn redigested(out: &mut String, p: &Palette, plan: &Plan) {
    let Some(first) = plan.redigested.first() else { return };
    let values: usize = plan.redigested.iter().map(|r| r.keys.len()).sum();
    let cvms = plan.redigested.len();
    let same_from = plan.redigested.iter().all(|r| r.from == first.from);
    let from = if same_from { first.from.as_str() } else { "other modes" };
    let _ = writeln!(
        out,
        "{} {values} secret digest{} in {cvms} CVM{} {} made with {from}; applying writes {} again with {}, in state \
         only: no value is sent and no CVM restarts.\n",
        p.cyan("note:"),
        if values == 1 { "" } else { "s" },
        if cvms == 1 { "" } else { "s" },
        if values == 1 { "was" } else { "were" },
        if values == 1 { "it" } else { "them" },
        first.to,
    );
}

/// Why a replacement happens, in words: "its `kms` cannot change in place", ….
pub fn replacement_cause(c: &Change) -> String {
    let mut causes = Vec::new();
    for r in &c.reasons {
        match r {
            Reason::ForcesReplacement { attributes } => {
                let names: Vec<String> = attributes.iter().map(|a| format!("`{a}`")).collect();
                causes.push(format!("{} cannot change in place", names.join(", ")));
            }
            Reason::ReplaceRequested => causes.push(format!("`--replace {}` asks for it", c.address)),
            Reason::Tainted => causes.push("a previous create did not finish".to_string()),
            _ => {}
        }
    }
    if causes.is_empty() { "it must be replaced".into() } else { format!("its {}", causes.join("; ")) }
}

/// What a replacement costs, in words.
pub fn replacement_consequence(c: &Change) -> String {
    if let Some(source) = c.reasons.iter().find_map(|r| match r {
        Reason::JoinsApp { source } => Some(source),
        _ => None,
    }) {
        return format!(
            "the new instance joins the app of {source} (same app_id and KMS-derived keys) with a new disk (the old one's data is lost), vm_uuid and instance id"
        );
    }
    let onchain = c.reasons.iter().any(|r| matches!(r, Reason::RotatesAppId { onchain: true }));
    format!(
        "the new CVM gets a new app_id → new KMS-derived keys and a new disk (the old one's data is lost){}",
        if onchain { "; on-chain KMS: a new app contract" } else { "" }
    )
}

fn needs_attention(n: usize) -> String {
    format!("but {n} CVM{} need{} attention (above).", if n == 1 { "" } else { "s" }, if n == 1 { "s" } else { "" })
}

/// CVMs whose run state needs a person: what is wrong, the API's boot error, where the boot
/// log is, and the next step.
pub(super) fn attention(out: &mut String, p: &Palette, plan: &Plan) {
    if plan.attention.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}\n", p.bold(&p.red("CVMs that need attention:")));
    for a in &plan.attention {
        attention_item(out, p, a, plan.changes.iter().any(|c| c.address == a.address));
    }
}

fn attention_item(out: &mut String, p: &Palette, a: &Attention, changed: bool) {
    let heading = match &a.problem {
        Problem::Failed => format!("# {} has failed (status {})", a.address, a.status),
        Problem::FailedCreate => {
            format!("# {} failed to boot after teeform created it (status {})", a.address, a.status)
        }
        Problem::Stuck { .. } => format!("# {} is stuck {} (longer than teeform waits for a CVM)", a.address, a.status),
        Problem::BootFailedAgain => {
            format!("# {} failed to boot again after it was replaced; it is not replaced again", a.address)
        }
    };
    let _ = writeln!(out, "  {}", p.bold(&heading));
    match a.boot_errors.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(out, "      boot error: {one}");
        }
        many => {
            for (i, e) in many.iter().enumerate() {
                let _ = writeln!(out, "      boot error {}: {e}", i + 1);
            }
        }
    }
    let _ = writeln!(out, "      boot log:   {}", a.logs);
    let next = match (&a.problem, changed) {
        (Problem::Failed, true) => "this plan updates it, which restarts it; apply reports whether it then runs".to_string(),
        (Problem::Failed, false) => "applying sends nothing that would fix it: fix the cause in the manifest (compose, image, env) and apply, which restarts it, or restart it in the dashboard or with `phala cvms restart`".to_string(),
        (Problem::Stuck { since }, _) => format!(
            "busy{}; it may yet finish: plan again later, and if it stays so, read its boot log",
            since.as_deref().map(|s| format!(" since {s}")).unwrap_or_default()
        ),
        (Problem::FailedCreate, _) => "it is tainted: the next plan replaces it, once".to_string(),
        (Problem::BootFailedAgain, _) => "change what made it fail in the manifest (compose, image, env, size) and apply: a changed configuration is tried again".to_string(),
    };
    let _ = writeln!(out, "      {} {next}\n", p.cyan("next:"));
}

pub(super) fn heading(c: &Change) -> String {
    let restart = if c.reasons.contains(&Reason::RestartsCvm) { " (restarts the CVM)" } else { "" };
    let only_power = c.attributes.iter().all(|a| a.name == Attr::Power);
    match c.action {
        Action::Create if let Some(Reason::Surge { of }) = c.reasons.first() => {
            format!("# {} will be created: a surge instance for the roll of {of}", c.address)
        }
        Action::Create => format!("# {} will be created", c.address),
        Action::Update if c.reasons.contains(&Reason::Starts) && only_power => {
            format!("# {} will be started", c.address)
        }
        Action::Update if c.reasons.contains(&Reason::Starts) => {
            format!("# {} will be updated in-place, then started", c.address)
        }
        Action::Update if c.reasons.contains(&Reason::Stops) && only_power => {
            format!("# {} will be stopped", c.address)
        }
        Action::Update if c.reasons.contains(&Reason::Stops) => {
            format!("# {} will be stopped, then updated in-place", c.address)
        }
        Action::Update if c.attributes.iter().all(|a| a.name == Attr::Name) => {
            format!("# {} will be renamed in place", c.address)
        }
        Action::Update => format!("# {} will be updated in-place{restart}", c.address),
        Action::Replace if c.reasons.contains(&Reason::Tainted) => {
            format!("# {} is tainted, so it must be replaced", c.address)
        }
        Action::Replace => format!("# {} must be replaced", c.address),
        Action::Delete
            if let Some(Reason::ScaledIn { from, to }) =
                c.reasons.iter().find(|r| matches!(r, Reason::ScaledIn { .. })) =>
        {
            format!("# {} will be destroyed (replicas {from} → {to})", c.address)
        }
        Action::Delete
            if let Some(Reason::BeyondReplicas { replicas }) =
                c.reasons.iter().find(|r| matches!(r, Reason::BeyondReplicas { .. })) =>
        {
            format!("# {} will be destroyed (its index is beyond `replicas: {replicas}`)", c.address)
        }
        Action::Delete if c.reasons.contains(&Reason::SurgeLeftover) => {
            format!("# {} will be destroyed (a surge instance left by a roll that is now done)", c.address)
        }
        Action::Delete if c.reasons.contains(&Reason::NotInManifest) => {
            format!("# {} will be destroyed (it is no longer in the manifest)", c.address)
        }
        Action::Delete => format!("# {} will be destroyed", c.address),
    }
}

pub(super) fn change(out: &mut String, p: &Palette, c: &Change) {
    let _ = writeln!(out, "  {}", p.bold(&heading(c)));
    if let Some(from) = &c.moved_from {
        // `replicas:` moves `cvm.KEY` to `cvm.KEY[0]` and back: the same CVM, renumbered.
        let was = if from.key() == c.address.key() { "was" } else { "moved from" };
        let _ = writeln!(out, "  {}", p.bold(&format!("# ({was} {from})")));
    }
    let _ = writeln!(out, "  {} cvm \"{}\" {{", symbol(p, c.action), c.address.key());
    match c.action {
        Action::Create => {
            // A hand-edited plan file may lack it; show nothing rather than fail.
            let empty = crate::model::CvmAttrs::default();
            let after = c.after.as_ref().unwrap_or(&empty);
            for spec in SCHEMA {
                let v = after.get(spec.attr);
                match spec.ty {
                    Type::Env if !after.env.is_empty() => {
                        let _ = writeln!(out, "      {} env = {{", p.green("+"));
                        for (k, e) in &after.env {
                            let _ = writeln!(out, "          {} {k} = {}", p.green("+"), env_shown(e));
                        }
                        out.push_str("        }\n");
                    }
                    Type::Env => {}
                    _ if v.is_null() => {}
                    ty => attr_line(out, p, "+", spec.key, ty, None, Some(&v)),
                }
            }
        }
        Action::Delete => {
            if let Some(b) = &c.before {
                let _ = writeln!(out, "      {} name = \"{}\"", p.red("-"), b.name);
            }
            if let Some(ids) = &c.ids {
                let _ = writeln!(out, "      {} id   = \"{}\"", p.red("-"), ids.id);
            }
        }
        Action::Update | Action::Replace => {
            for a in &c.attributes {
                attr_change(out, p, c, a);
            }
            let hidden = SCHEMA.len() - c.attributes.len();
            // A hash the change leaves as it was is no change to show.
            if let Some(h) = c.compose_hash.as_ref().filter(|h| h.before.as_deref() != Some(h.after.as_str())) {
                let before = h.before.as_deref().map(short_hash).unwrap_or_else(|| "(none)".into());
                let _ = writeln!(
                    out,
                    "      {} compose_hash = {} -> {} (preview; the API's hash is authoritative)",
                    p.yellow("~"),
                    before,
                    short_hash(&h.after)
                );
            }
            let _ = writeln!(out, "        # ({hidden} unchanged attributes hidden)");
        }
    }
    out.push_str("    }\n");
    for r in &c.reasons {
        if let Some(n) = note(r) {
            let _ = writeln!(out, "    {} {n}", p.cyan("note:"));
        }
    }
    out.push('\n');
}

/// A change as the plan's text shows it, with its heading: a roll is one change, shown at its
/// first instance with that one's diff; another instance of it is shown only where its diff
/// differs from the first's (`None` where it does not), so no change the plan makes is hidden.
pub(super) fn shown_change(out: &mut String, p: &Palette, plan: &Plan, c: &Change) -> Option<String> {
    match plan.rolls.iter().find(|r| r.instances.contains(&c.address)) {
        Some(r) if r.instances[0] == c.address => {
            let made =
                r.surge.iter().filter(|a| plan.changes.iter().any(|x| x.address == **a && x.action == Action::Create));
            Some(roll::roll(out, p, r, c, made.count()))
        }
        Some(r) if plan.changes.iter().any(|f| f.address == r.instances[0] && same_diff(f, c)) => None,
        Some(r) => {
            let mut block = String::new();
            change(&mut block, p, c);
            let own = format!(
                "# {} will be updated in-place in the roll of {}, with its own differences",
                c.address, r.address
            );
            out.push_str(&roll::in_roll(&block, r).replacen(&p.bold(&heading(c)), &p.bold(&own), 1));
            Some(own)
        }
        None => {
            change(out, p, c);
            Some(heading(c))
        }
    }
}

/// Whether two instances' changes show the same diff: what the text shows of each, heading
/// and `moved:` line aside and each one's own address written alike. Compared as shown, not as
/// data: a secret's digests differ per instance (salted per scope) where both show
/// `(sensitive value) (changed)`.
fn same_diff(a: &Change, b: &Change) -> bool {
    let shown = |c: &Change| {
        let mut out = String::new();
        change(&mut out, &Palette::plain(), &Change { moved_from: None, ..c.clone() });
        let body = out.split_once('\n').map_or("", |(_, rest)| rest);
        body.replace(c.address.as_str(), "\0")
    };
    a.action == b.action && shown(a) == shown(b)
}

/// [`Reason::RestartsCvm`]'s note for a CVM of one instance.
const RESTART_NOTE: &str = "restarts the CVM: these changes go out as one update with one restart (expect downtime)";

fn note(r: &Reason) -> Option<String> {
    Some(match r {
        Reason::RestartsCvm => RESTART_NOTE.into(),
        Reason::SetAfterCreate { attributes } => {
            let names: Vec<&str> = attributes.iter().map(|a| a.key()).collect();
            format!(
                "a create cannot set {}: one update right after it does, which restarts the new CVM once",
                names.join(", ")
            )
        }
        Reason::ForcesReplacement { attributes } => {
            let names: Vec<&str> = attributes.iter().map(|a| a.key()).collect();
            format!("{} cannot change in place, so the CVM is destroyed and created again", names.join(", "))
        }
        Reason::ReplaceRequested => "--replace asks for this replacement".into(),
        Reason::RotatesAppId { onchain } => format!(
            "replacement gives a new app_id → new KMS-derived keys, and a new disk: the old CVM's data is lost{}",
            if *onchain { "; on-chain KMS: a new app contract" } else { "" }
        ),
        Reason::JoinsApp { source } => format!(
            "the replacement is made from {source}: it keeps the app_id and KMS-derived keys, and gets a new disk (the old instance's data is lost), vm_uuid and instance id"
        ),
        Reason::Renames => "renamed in place (the API's rename): same app id, keys and disk, and no restart".into(),
        Reason::Tainted => "a previous create did not finish; the CVM is replaced".into(),
        Reason::DeletedOutsideTeeform => "the CVM was deleted outside teeform; it is created again".into(),
        Reason::EnvKeysChanged { added, removed } => {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", removed.join(", ")));
            }
            format!("env keys changed ({}): allowed_envs and so the compose hash change", parts.join("; "))
        }
        Reason::OnChainRegistration(n) => {
            let contract = n.contract.as_deref().unwrap_or("(app contract from the API)");
            let state = match n.allowed {
                Some(true) => "already allowed on chain".to_string(),
                Some(false) => "not yet allowed: it must be registered before the update commits".to_string(),
                None => "must be allowed on chain before the update commits".to_string(),
            };
            format!(
                "on-chain KMS: compose hash 0x{} on chain {} contract {contract} is {state}",
                n.compose_hash, n.chain_id
            )
        }
        Reason::Starts => {
            "starts the CVM, which is stopped (the manifest wants it running; `power: stopped` keeps it stopped)".into()
        }
        Reason::Stops => "stops the CVM (`power: stopped`): its apps stop until the manifest says otherwise".into(),
        Reason::BootFailed { errors, logs } => format!(
            "its boot failed: {}; boot log: `{logs}`. If the replacement fails the same way, teeform stops replacing it",
            errors.last().map(String::as_str).unwrap_or("(no boot error)")
        ),
        Reason::SecretsResent { keys, made_with, now } => {
            let one = keys.len() == 1;
            format!(
                "{}: state's digest{} made with {made_with}, and this run has {now}: {} cannot be compared, so {} sent again",
                keys.join(", "),
                if one { " was" } else { "s were" },
                if one { "the value" } else { "the values" },
                if one { "it is" } else { "they are" },
            )
        }
        Reason::NotInManifest | Reason::ScaledIn { .. } | Reason::BeyondReplicas { .. } | Reason::DestroyRequested => {
            return None;
        }
        Reason::Surge { of } => format!(
            "temporary extra capacity for the roll of {of}: a replica of {of}[0], brought to the new revision before the first batch, destroyed once the last batch passes (not counted as a restart)"
        ),
        Reason::SurgeLeftover => "a paused roll kept it as extra capacity; the roll is done, so it goes".into(),
    })
}

pub fn short_hash(h: &str) -> String {
    if h.len() > 16 { format!("{}…{}", &h[..8], &h[h.len() - 4..]) } else { h.to_string() }
}

fn env_shown(e: &EnvVal) -> String {
    if e.is_sensitive() {
        SENSITIVE.into()
    } else if let Some(v) = &e.value {
        format!("{v:?}")
    } else if e.template.as_ref().is_some_and(|t| t.refs().any(|r| r.is_secret())) {
        SENSITIVE.into()
    } else {
        UNKNOWN.into()
    }
}

fn value_shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.contains('\n') => {
            format!("<<EOT ({} lines)", s.lines().count())
        }
        serde_json::Value::Null => "null".into(),
        // JSON escapes control characters; the others a terminal hides get markers.
        serde_json::Value::String(_) => {
            v.to_string().chars().map(|c| marker(c).map_or_else(|| c.to_string(), |(m, _)| m)).collect()
        }
        other => other.to_string(),
    }
}

fn attr_line(
    out: &mut String,
    p: &Palette,
    sym: &str,
    name: &str,
    ty: Type,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) {
    let colored = match sym {
        "+" => p.green(sym),
        "-" => p.red(sym),
        _ => p.yellow(sym),
    };
    // Multi-line text (compose, scripts) is shown in full for creates, with what would not
    // show marked as in diffs.
    if let (None, Some(serde_json::Value::String(s))) = (before, after)
        && s.contains('\n')
    {
        let _ = writeln!(out, "      {colored} {name} = <<EOT");
        let eol = Eol::of(s);
        let text = if eol == Eol::CrLf { crlf_to_lf(s) } else { s.into() };
        let mut used = Markers::default();
        // Tabs are marked where YAML forbids them in indentation.
        let tabs = matches!(ty, Type::File { file, .. } if is_yaml(file));
        for l in text.split_inclusive('\n') {
            let l = l.strip_suffix('\n').unwrap_or(l);
            let _ = writeln!(out, "            {}", visible(l, tabs, &mut used, &|s| s.to_string(), &|s| p.marker(s)));
        }
        out.push_str("        EOT\n");
        if eol == Eol::CrLf {
            let _ = writeln!(out, "        {} CRLF line endings", p.cyan("note:"));
        }
        if let Some(legend) = used.legend() {
            let _ = writeln!(out, "        {} {legend}", p.cyan("note:"));
        }
        return;
    }
    match (before, after) {
        (Some(b), Some(a)) => {
            let _ = writeln!(out, "      {colored} {name} = {} -> {}", value_shown(b), value_shown(a));
        }
        (None, Some(a)) => {
            let _ = writeln!(out, "      {colored} {name} = {}", value_shown(a));
        }
        (Some(b), None) => {
            let _ = writeln!(out, "      {colored} {name} = {}", value_shown(b));
        }
        (None, None) => {}
    }
}

fn attr_change(out: &mut String, p: &Palette, c: &Change, a: &AttrChange) {
    let replace = if a.forces_replacement { format!(" {}", p.red("# forces replacement")) } else { String::new() };
    match a.name.spec().ty {
        Type::File { file, .. } => {
            let b = a.before.as_str().unwrap_or_default();
            let n = a.after.as_str().unwrap_or_default();
            let _ = writeln!(out, "      {} {}:{replace}", p.yellow("~"), a.name);
            text_diff(out, p, b, n, file);
        }
        Type::Env => {
            let _ = writeln!(out, "      {} env = {{", p.yellow("~"));
            let before = c.before.as_ref().map(|b| &b.env);
            let after = c.after.as_ref().map(|a| &a.env);
            let empty = Default::default();
            let (before, after) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
            let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
            keys.sort();
            keys.dedup();
            let mut unchanged = 0;
            for k in keys {
                match (before.get(k), after.get(k)) {
                    (None, Some(n)) => {
                        let _ = writeln!(out, "          {} {k} = {}", p.green("+"), env_shown(n));
                    }
                    (Some(o), None) => {
                        let _ = writeln!(out, "          {} {k} = {}", p.red("-"), env_shown(o));
                    }
                    (Some(o), Some(n)) if !o.same_as(n) => {
                        if n.is_sensitive() || o.is_sensitive() {
                            let _ = writeln!(out, "          {} {k} = {SENSITIVE} (changed)", p.yellow("~"));
                        } else if o.is_unknown() {
                            let _ = writeln!(
                                out,
                                "          {} {k} = (unknown: not recorded in state) -> {}",
                                p.yellow("~"),
                                env_shown(n)
                            );
                        } else {
                            let _ =
                                writeln!(out, "          {} {k} = {} -> {}", p.yellow("~"), env_shown(o), env_shown(n));
                        }
                    }
                    _ => unchanged += 1,
                }
            }
            if unchanged > 0 {
                let _ = writeln!(out, "            # ({unchanged} unchanged)");
            }
            out.push_str("        }\n");
        }
        _ => {
            let sym = p.yellow("~");
            let _ = writeln!(
                out,
                "      {sym} {} = {} -> {}{replace}",
                a.name,
                value_shown(&a.before),
                value_shown(&a.after)
            );
        }
    }
}

pub(super) fn drift(out: &mut String, p: &Palette, d: &Drift) {
    if d.deleted {
        let _ = writeln!(out, "  {}\n", p.bold(&format!("# {} has been deleted", d.address)));
        return;
    }
    let _ = writeln!(out, "  {}", p.bold(&format!("# {} has changed", d.address)));
    let _ = writeln!(out, "  {} cvm \"{}\" {{", p.yellow("~"), d.address.key());
    for a in &d.attributes {
        match a.name.spec().ty {
            Type::File { file, .. } => {
                let _ = writeln!(out, "      {} {}:", p.yellow("~"), a.name);
                text_diff(out, p, a.before.as_str().unwrap_or_default(), a.after.as_str().unwrap_or_default(), file);
            }
            Type::Env => {
                let keys = |v: &serde_json::Value| {
                    v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
                };
                let _ =
                    writeln!(out, "      {} env keys = [{}] -> [{}]", p.yellow("~"), keys(&a.before), keys(&a.after));
            }
            _ => {
                let _ = writeln!(
                    out,
                    "      {} {} = {} -> {}",
                    p.yellow("~"),
                    a.name,
                    value_shown(&a.before),
                    value_shown(&a.after)
                );
            }
        }
    }
    out.push_str("    }\n\n");
}

pub(super) fn outputs(out: &mut String, p: &Palette, plan: &Plan) {
    out.push_str("Changes to Outputs:\n");
    for (name, o) in &plan.outputs {
        let after = if o.sensitive {
            SENSITIVE.to_string()
        } else {
            o.known.as_ref().map_or(UNKNOWN.to_string(), |v| format!("{v:?}"))
        };
        match (o.action(), &o.before) {
            ("create", _) => {
                let _ = writeln!(out, "  {} {name} = {after}", p.green("+"));
            }
            ("update", Some(b)) => {
                let _ = writeln!(out, "  {} {name} = {b:?} -> {after}", p.yellow("~"));
            }
            _ => {}
        }
    }
    for (name, o) in &plan.removed_outputs {
        let before = match (&o.value, o.sensitive) {
            (Some(v), false) => format!("{v:?}"),
            (None, false) => UNKNOWN.to_string(),
            (_, true) => SENSITIVE.to_string(),
        };
        let _ = writeln!(out, "  {} {name} = {before}", p.red("-"));
    }
    out.push('\n');
}
