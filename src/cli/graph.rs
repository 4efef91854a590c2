//! `teeform graph [--format dot|mermaid]`: the manifest's dependency graph (explicit
//! `depends_on` and the references that imply one), as Graphviz DOT or a Mermaid flowchart.
//! An arrow reads "depends on", as in Terraform's graph; apply creates what an arrow points
//! to first. Reads the manifest only.

use std::fmt::Write as _;

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::session::check_graph;
use super::{GraphFormat, VarArgs};
use crate::manifest::Config;

pub fn run(ctx: &Ctx, vars: &VarArgs, format: GraphFormat) -> CliResult {
    let cfg = ctx.load_with(vars)?;
    check_graph(&cfg)?;
    ctx.shell.print(&match format {
        GraphFormat::Dot => dot(&cfg),
        GraphFormat::Mermaid => mermaid(&cfg),
    })?;
    Ok(exit::OK)
}

/// A string in DOT's double quotes.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The graph in Graphviz DOT: one node per CVM (its address, and its name in the cloud).
pub fn dot(cfg: &Config) -> String {
    let mut out = String::from("digraph teeform {\n  rankdir = \"RL\";\n  node [shape = box];\n");
    for (key, c) in &cfg.cvms {
        let _ = writeln!(
            out,
            "  {} [label = {}];",
            quoted(&format!("cvm.{key}")),
            quoted(&format!("cvm.{key}\n{}", c.name)).replace('\n', "\\n")
        );
    }
    for (key, c) in &cfg.cvms {
        for d in c.depends_on.iter().collect::<std::collections::BTreeSet<_>>() {
            let _ = writeln!(out, "  {} -> {};", quoted(&format!("cvm.{key}")), quoted(&format!("cvm.{d}")));
        }
    }
    out.push_str("}\n");
    out
}

/// The graph as a Mermaid flowchart (GitHub renders it in a ```mermaid block).
pub fn mermaid(cfg: &Config) -> String {
    let ids: std::collections::BTreeMap<&str, String> =
        cfg.cvms.keys().enumerate().map(|(i, k)| (k.as_str(), format!("n{i}"))).collect();
    let label = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("flowchart RL\n");
    for (key, c) in &cfg.cvms {
        let _ = writeln!(out, "  {}[\"cvm.{}<br/>{}\"]", ids[key.as_str()], label(key), label(&c.name));
    }
    for (key, c) in &cfg.cvms {
        for d in c.depends_on.iter().collect::<std::collections::BTreeSet<_>>() {
            if let Some(to) = ids.get(d.as_str()) {
                let _ = writeln!(out, "  {} --> {to}", ids[key.as_str()]);
            }
        }
    }
    out
}
