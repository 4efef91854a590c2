//! A group of findings as one diagnostic: in the compose file or in the manifest, naming a few
//! of the CVMs it applies to and how many more, with did-you-mean hints from the env keys and
//! the file's variables.

use std::sync::Arc;

use super::super::diag::{Diagnostic, Source, did_you_mean};
use super::check::{FindingKind, Group, SHOWN};

/// `cvm.a`, `cvm.a and cvm.b`, `cvm.a, cvm.b, cvm.c and 7 more`.
fn cvm_list(members: &[(String, crate::manifest::Span)]) -> String {
    let names: Vec<String> = members.iter().take(SHOWN).map(|(c, _)| format!("cvm.{c}")).collect();
    let more = members.len().saturating_sub(SHOWN);
    match (names.len(), more) {
        (_, m) if m > 0 => format!("{} and {m} more", names.join(", ")),
        (1, _) => names[0].clone(),
        _ => {
            let (last, rest) = names.split_last().expect("at least one member");
            format!("{} and {last}", rest.join(", "))
        }
    }
}

pub(super) fn diagnostic(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    match g.kind {
        FindingKind::File => file(manifest, g),
        FindingKind::Size => size(manifest, g),
        FindingKind::MissingRequired => missing_required(manifest, g),
        FindingKind::EmptyRequired => empty_required(manifest, g),
        FindingKind::Missing => missing(manifest, g),
        FindingKind::Unused => unused(manifest, g),
    }
}

/// The interpolation as written, from a file that may be quoted; else just its name.
fn written(g: &Group) -> String {
    let text = g.compose.text.get(g.span.start..g.span.end).filter(|w| g.compose.quote && w.contains('$'));
    text.map_or_else(|| format!("${{{}}}", g.name), str::to_string)
}

/// The first few CVMs, each where it names the file (`label cvm.X`).
fn with_members(manifest: &Arc<Source>, d: Diagnostic, g: &Group, label: &str) -> Diagnostic {
    g.members.iter().take(SHOWN).fold(d, |d, (c, span)| d.also(manifest, *span, format!("{label} cvm.{c}")))
}

/// The CVMs after the first (which the diagnostic is about), a few of them.
fn with_others(manifest: &Arc<Source>, d: Diagnostic, g: &Group, label: &str) -> Diagnostic {
    g.members.iter().skip(1).take(SHOWN - 1).fold(d, |d, (c, s)| d.also(manifest, *s, format!("{label} cvm.{c}")))
}

/// "did you mean env key `K`?" for a close key.
fn close_key(d: Diagnostic, g: &Group) -> Diagnostic {
    match did_you_mean(&g.name, g.keys.iter().map(String::as_str)) {
        Some(k) => d.hint(format!("did you mean env key `{k}`? the names must match exactly")),
        None => d,
    }
}

fn file(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let who = cvm_list(&g.members);
    let d = Diagnostic::error(&g.compose, g.span, g.message.clone()).label(g.label);
    let d = with_members(manifest, d, &g, "the compose file of");
    if g.members.len() > SHOWN { d.hint(format!("the file is used by {who}")) } else { d }
}

fn size(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let (c, span) = &g.members[0];
    let d = Diagnostic::error(manifest, *span, format!("cvm.{c}: {}", g.message)).label("too large");
    let d = with_others(manifest, d, &g, "also");
    let d =
        if g.members.len() > 1 { d.hint(format!("the same files are used by {}", cvm_list(&g.members))) } else { d };
    d.hint("move data out of the compose file (images, volumes, configs fetched at start)")
}

fn missing_required(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let does = if g.members.len() > 1 { "do" } else { "does" };
    let d = Diagnostic::error(
        &g.compose,
        g.span,
        format!("`{}` requires env key `{}`, which {} {does} not set", written(&g), g.name, cvm_list(&g.members)),
    )
    .label(g.label);
    let d = with_members(manifest, d, &g, &format!("no `{}` in the env of", g.name));
    close_key(d, &g).hint(format!(
        "add `{}: ...` under `env:`; without it docker compose stops inside the CVM (\"required variable {} is missing a value\")",
        g.name, g.name
    ))
}

fn empty_required(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let (c, span) = &g.members[0];
    let d = Diagnostic::error(
        manifest,
        *span,
        format!("env `{}` of cvm.{c} is empty, but the compose file requires a value", g.name),
    )
    .label("empty value")
    .also(&g.compose, g.span, format!("`{}` stops docker compose when empty", written(&g)));
    let d = with_others(manifest, d, &g, "also empty in");
    let d = if g.members.len() > 1 { d.hint(format!("empty in {}", cvm_list(&g.members))) } else { d };
    d.hint(format!("give `{}` a value, or write `${{{}?...}}` in the compose file if empty is allowed", g.name, g.name))
}

fn missing(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let d = Diagnostic::warning(
        &g.compose,
        g.span,
        format!("`{}` has no env key in {}, so it expands to an empty string", written(&g), cvm_list(&g.members)),
    )
    .label(g.label);
    let d = with_members(manifest, d, &g, &format!("no `{}` in the env of", g.name));
    close_key(d, &g).hint(format!(
        "add `{0}` under `env:`; or, if empty is intended, write `${{{0}:-}}` in the compose file, or add `{0}` to the CVM's `lint: {{ignore: [...]}}`",
        g.name
    ))
}

fn unused(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let (c, span) = &g.members[0];
    let d = Diagnostic::warning(
        manifest,
        *span,
        format!("env key `{}` of cvm.{c} is used by neither its compose file nor its pre-launch script", g.name),
    )
    .label(g.label);
    let d = with_others(manifest, d, &g, "also unused in");
    let d = if g.members.len() > 1 { d.hint(format!("unused in {}", cvm_list(&g.members))) } else { d };
    let d = match did_you_mean(&g.name, g.wanted.iter().map(String::as_str)) {
        Some(w) => d.hint(format!("did you mean `{w}`? the compose file uses `${{{w}}}`")),
        None => d,
    };
    d.hint(format!(
        "a value reaches a container only through `${{{0}}}` in the compose file (or the pre-launch script); to keep it anyway, add `{0}` to the CVM's `lint: {{ignore: [...]}}`",
        g.name
    ))
}
