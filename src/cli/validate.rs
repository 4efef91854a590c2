//! `teeform validate [--json]`: the manifest alone, no state, no network.

use super::VarArgs;
use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use super::shared::session::check_graph;
use crate::manifest::Diagnostic;

pub fn run(ctx: &Ctx, vars: &VarArgs, json: bool) -> CliResult {
    let loaded = crate::manifest::load(ctx.manifest_path(), &ctx.load_options(vars));
    let result = loaded.map_err(CliError::from).and_then(|cfg| check_graph(&cfg).map(|_| cfg));
    match (result, json) {
        (Ok(cfg), false) => {
            for w in &cfg.warnings {
                ctx.shell.diagnostic(w);
            }
            ctx.shell.println(&format!(
                "The manifest is valid: {} CVM{}, {} output{}.",
                cfg.cvms.len(),
                if cfg.cvms.len() == 1 { "" } else { "s" },
                cfg.outputs.len(),
                if cfg.outputs.len() == 1 { "" } else { "s" }
            ))?;
            Ok(exit::OK)
        }
        (Ok(cfg), true) => {
            let diagnostics: Vec<serde_json::Value> = cfg.warnings.iter().map(diag_json).collect();
            ctx.shell.print_json(&serde_json::json!({"valid": true, "error_count": 0, "warning_count": cfg.warnings.len(), "diagnostics": diagnostics}))?;
            Ok(exit::OK)
        }
        (Err(e), false) => Err(e),
        (Err(e), true) => print_invalid(ctx, &e),
    }
}

/// A manifest that did not load, as `validate --json` (and `plan --json`) write it on stdout:
/// `{"valid": false, "error_count": N, "diagnostics": [{"severity", "message", "file", "line",
/// "column", "label", "hints", "related"}]}`. Exits 1 with nothing more on stderr.
pub(super) fn print_invalid(ctx: &Ctx, e: &CliError) -> CliResult {
    let mut diags: Vec<serde_json::Value> = e.diagnostics.iter().map(diag_json).collect();
    if e.diagnostics.is_empty() {
        diags.push(serde_json::json!({"severity": "error", "message": e.message}));
    }
    let errors = diags.iter().filter(|d| d["severity"] == "error").count();
    ctx.shell.print_json(&serde_json::json!({"valid": false, "error_count": errors, "diagnostics": diags}))?;
    Ok(exit::ERROR)
}

fn diag_json(d: &Diagnostic) -> serde_json::Value {
    let (file, line, col) = match &d.source {
        Some(s) => {
            let (l, c) = s.line_col(d.span.start);
            (Some(s.display.clone()), Some(l), Some(c))
        }
        None => (None, None, None),
    };
    let related: Vec<serde_json::Value> = d
        .also
        .iter()
        .map(|r| {
            let (l, c) = r.source.line_col(r.span.start);
            serde_json::json!({"file": r.source.display, "line": l, "column": c, "label": r.label})
        })
        .collect();
    serde_json::json!({"severity": d.severity, "message": d.message, "file": file, "line": line, "column": col, "label": d.label, "hints": d.hints, "related": related})
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::context::Ctx;
    use crate::cli::error::exit;
    use crate::cli::shell::{Shell, Verbosity};

    /// A command run in-process, its output captured from the shell.
    #[test]
    fn validate_writes_its_report_through_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yml"), "services:\n  web:\n    image: nginx\n").unwrap();
        let manifest = dir.path().join("teeform.yaml");
        let cases = [
            (
                "cvms:\n  web-app:\n    compose: web.yml\n",
                false,
                exit::OK,
                "The manifest is valid: 1 CVM, 0 outputs.\n",
            ),
            ("cvms:\n  web-app:\n    compose: web.yml\n    vcpus: 2\n", true, exit::ERROR, "\"valid\": false"),
        ];
        for (text, json, code, want) in cases {
            std::fs::write(&manifest, text).unwrap();
            let path = manifest.to_string_lossy().to_string();
            let cli = crate::cli::Cli::try_parse_from(["teeform", "-f", &path, "validate"]).unwrap();
            let (shell, captured) = Shell::capture(false, Verbosity::Normal);
            let ctx = Ctx::new(cli.global, shell).unwrap();
            let vars = crate::cli::VarArgs::default();
            assert_eq!(super::run(&ctx, &vars, json).unwrap(), code, "{text}");
            assert!(captured.stdout().contains(want), "{text}: {}", captured.stdout());
            assert_eq!(captured.stderr(), "", "{text}");
        }
    }
}
