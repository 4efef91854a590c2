//! Tidy checks: the invariants ARCHITECTURE.md states about who may use what, checked on the
//! source itself (rust-analyzer's `tidy.rs` is the model). Each check parses `src/` with `syn`,
//! so a path in a comment or a string never counts, and each failure names file:line.
//!
//! When one fails, the fix is usually to move the code to the module that owns the thing (the
//! message says which); an exception is a decision, so it goes into ARCHITECTURE.md first and
//! into the check's list second.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Every `.rs` file under `src/`, relative to the crate root, with its parsed syntax tree.
fn sources() -> Vec<(String, syn::File, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, file, text)
        })
        .collect()
}

/// The product's sources: [`sources`] without test modules kept in files of their own
/// (`tests.rs`, declared `#[cfg(test)] mod tests;`).
fn product_sources() -> Vec<(String, syn::File, String)> {
    sources().into_iter().filter(|(p, ..)| !p.ends_with("/tests.rs")).collect()
}

/// Whether `attrs` hold `#[cfg(test)]` (a test module or item: the rules are about the product).
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().contains("test")))
}

/// The paths, macro calls and types a file uses outside its tests, with their lines.
#[derive(Default)]
struct Uses {
    /// `a::b::c` for every path and `use` tree leaf, with the line it starts on.
    paths: Vec<(String, usize)>,
    /// Macro names called (`println`, `dbg`, …).
    macros: Vec<(String, usize)>,
    /// `Result<_, String>` types.
    string_results: Vec<usize>,
    /// `async fn`s.
    asyncs: Vec<usize>,
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            if f.sig.asyncness.is_some() {
                self.asyncs.push(f.sig.ident.span().start().line);
            }
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            if f.sig.asyncness.is_some() {
                self.asyncs.push(f.sig.ident.span().start().line);
            }
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if is_test(&u.attrs) {
            return;
        }
        fn leaves(prefix: String, t: &syn::UseTree, line: usize, out: &mut Vec<(String, usize)>) {
            let join = |s: &str| if prefix.is_empty() { s.to_string() } else { format!("{prefix}::{s}") };
            match t {
                syn::UseTree::Path(p) => leaves(join(&p.ident.to_string()), &p.tree, line, out),
                syn::UseTree::Name(n) => out.push((join(&n.ident.to_string()), line)),
                syn::UseTree::Rename(r) => out.push((join(&r.ident.to_string()), line)),
                syn::UseTree::Glob(_) => out.push((join("*"), line)),
                syn::UseTree::Group(g) => g.items.iter().for_each(|i| leaves(prefix.clone(), i, line, out)),
            }
        }
        leaves(String::new(), &u.tree, u.use_token.span.start().line, &mut self.paths);
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let text = p.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::");
        let line = p.segments.first().map_or(0, |s| s.ident.span().start().line);
        self.paths.push((text, line));
        syn::visit::visit_path(self, p);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if let Some(name) = m.path.segments.last() {
            self.macros.push((name.ident.to_string(), name.ident.span().start().line));
        }
        syn::visit::visit_macro(self, m);
    }
    fn visit_type_path(&mut self, t: &'ast syn::TypePath) {
        if let Some(last) = t.path.segments.last()
            && last.ident == "Result"
            && let syn::PathArguments::AngleBracketed(a) = &last.arguments
            && let Some(syn::GenericArgument::Type(syn::Type::Path(err))) = a.args.iter().nth(1)
            && err.path.is_ident("String")
        {
            self.string_results.push(last.ident.span().start().line);
        }
        syn::visit::visit_type_path(self, t);
    }
}

fn uses(file: &syn::File) -> Uses {
    let mut u = Uses::default();
    u.visit_file(file);
    u
}

/// Where `paths` of the files `inside` does not cover start with one of `roots`.
fn used_outside(roots: &[&str], inside: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (path, file, _) in product_sources() {
        if inside(&path) {
            continue;
        }
        for (p, line) in uses(&file).paths {
            let first = p.split("::").next().unwrap_or_default();
            if roots.contains(&first) {
                found.push(format!("{path}:{line}: {p}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[track_caller]
fn none(found: Vec<String>, why: &str) {
    assert!(found.is_empty(), "{why}\n{}", found.join("\n"));
}

#[test]
fn only_the_shell_prints() {
    let macros = ["print", "println", "eprint", "eprintln", "dbg"];
    let mut found = Vec::new();
    for (path, file, _) in product_sources() {
        if path == "src/cli/shell.rs" || path.starts_with("src/cli/shell/") {
            continue;
        }
        for (m, line) in uses(&file).macros {
            if macros.contains(&m.as_str()) {
                found.push(format!("{path}:{line}: {m}!"));
            }
        }
    }
    none(
        found,
        "print through cli::shell::Shell (a print macro panics on a closed pipe, bypasses redaction and tears the progress region):",
    );
}

#[test]
fn only_state_touches_sled_or_postgres() {
    none(
        used_outside(&["sled", "tokio_postgres", "tokio_postgres_rustls", "postgres"], |p| p.starts_with("src/state/")),
        "only src/state knows its storage engines; give the state module a function instead:",
    );
}

#[test]
fn only_chain_knows_alloy() {
    none(
        used_outside(&["alloy"], |p| p.starts_with("src/chain/")),
        "only src/chain knows EVM types; it hands out hex strings:",
    );
}

#[test]
fn only_providers_and_the_simulator_speak_http() {
    // The client's HTTP is in providers (and chain's JSON-RPC transport); the simulator serves
    // with axum; the CLI starts the simulator and nothing else.
    none(
        used_outside(&["reqwest", "axum", "tower", "hyper"], |p| {
            p.starts_with("src/providers/") || p.starts_with("src/chain/") || p.starts_with("src/sim/")
        }),
        "HTTP belongs to providers (client) and sim (server):",
    );
}

#[test]
fn the_simulator_uses_nothing_of_the_client_but_compose_and_envcrypt() {
    let allowed = ["compose", "envcrypt", "sim"];
    let mut found = Vec::new();
    for (path, file, _) in product_sources() {
        if !path.starts_with("src/sim/") {
            continue;
        }
        for (p, line) in uses(&file).paths {
            let mut parts = p.split("::");
            if parts.next() == Some("crate")
                && let Some(module) = parts.next()
                && !allowed.contains(&module)
            {
                found.push(format!("{path}:{line}: {p}"));
            }
        }
    }
    none(found, "the simulator is an independent referee: give it its own code instead of the client's:");
}

#[test]
fn the_planner_and_the_graph_do_no_io() {
    let banned = [
        "tokio",
        "reqwest",
        "sled",
        "alloy",
        "rand",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "std::thread",
        "std::time::SystemTime",
        "std::time::Instant",
        "SystemTime",
        "Instant",
    ];
    let mut found = Vec::new();
    for (path, file, _) in product_sources() {
        if !(path.starts_with("src/plan/") || path == "src/graph.rs") {
            continue;
        }
        let u = uses(&file);
        for (p, line) in u.paths {
            if banned.iter().any(|b| p == *b || p.starts_with(&format!("{b}::"))) {
                found.push(format!("{path}:{line}: {p}"));
            }
        }
        found.extend(u.asyncs.iter().map(|line| format!("{path}:{line}: async fn")));
    }
    none(found, "plan and graph are pure (no I/O, clock, randomness or async); the CLI passes what they need:");
}

#[test]
fn nothing_in_apply_fails_with_a_string() {
    let mut found = Vec::new();
    for (path, file, text) in product_sources() {
        if !path.starts_with("src/apply/") {
            continue;
        }
        for line in uses(&file).string_results {
            found.push(format!("{path}:{line}: Result<_, String>"));
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or_default().replace(' ', "");
        if code.contains("map_err(|e|e.to_string())") {
            found.push(format!("{path}: .map_err(|e| e.to_string())"));
        }
    }
    none(found, "apply's failures are typed (apply::error::StepError):");
}

/// Files a newcomer can read in one sitting. A longer file is split by job; the few that are
/// long on purpose say why here.
#[test]
fn no_source_file_is_over_800_lines() {
    // (path, why): none today.
    const LONG_ON_PURPOSE: &[(&str, &str)] = &[];
    let mut found = Vec::new();
    for (path, _, text) in sources() {
        let n = text.lines().count();
        if n > 800 && !LONG_ON_PURPOSE.iter().any(|(p, _)| *p == path) {
            found.push(format!("{path}: {n} lines"));
        }
    }
    none(found, "split these by job (tests may move to a sibling `tests.rs`):");
}

/// A function over 80 lines says why in a comment that starts with `// Long:` inside it or
/// just above it.
#[test]
fn no_function_is_over_80_lines_without_a_reason() {
    struct Fns<'a> {
        text: &'a [&'a str],
        path: &'a str,
        found: Vec<String>,
    }
    impl Fns<'_> {
        fn check(&mut self, name: &syn::Ident, span: proc_macro2::Span) {
            let (start, end) = (span.start().line, span.end().line);
            if end - start < 80 {
                return;
            }
            let from = start.saturating_sub(4).max(1);
            let reason =
                self.text[from - 1..end.min(self.text.len())].iter().any(|l| l.trim_start().starts_with("// Long:"));
            if !reason {
                self.found.push(format!("{}:{start}: fn {name} is {} lines", self.path, end - start + 1));
            }
        }
    }
    impl<'ast> Visit<'ast> for Fns<'_> {
        fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
            if !is_test(&m.attrs) {
                syn::visit::visit_item_mod(self, m);
            }
        }
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            use syn::spanned::Spanned;
            self.check(&f.sig.ident, f.span());
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            use syn::spanned::Spanned;
            self.check(&f.sig.ident, f.span());
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    let mut found = Vec::new();
    for (path, file, text) in product_sources() {
        let lines: Vec<&str> = text.lines().collect();
        let mut v = Fns { text: &lines, path: &path, found: vec![] };
        v.visit_file(&file);
        found.extend(v.found);
    }
    none(found, "split these, or say why one piece reads better, in a `// Long:` comment:");
}
