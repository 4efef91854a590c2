//! The loader, table by table: every kind of input a user writes in each kind of field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::manifest::{DEFAULT_API_PREFIX, Endpoint, Kms};

/// A project directory with a manifest and the files it names.
struct Project {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
    env: BTreeMap<String, String>,
}

const WEB: &str = "services:\n  web:\n    image: nginx\n";

impl Project {
    fn new() -> Project {
        let p = Project { dir: tempfile::tempdir().unwrap(), vars: Vec::new(), env: BTreeMap::new() };
        p.file("web.yml", WEB);
        p
    }

    fn file(&self, rel: &str, text: &str) -> &Project {
        self.bytes(rel, text.as_bytes())
    }

    fn bytes(&self, rel: &str, bytes: &[u8]) -> &Project {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        self
    }

    fn var(mut self, k: &str, v: &str) -> Project {
        self.vars.push((k.into(), v.into()));
        self
    }

    fn env(mut self, k: &str, v: &str) -> Project {
        self.env.insert(k.into(), v.into());
        self
    }

    fn load(&self, manifest: &str) -> Result<Config, Vec<Diagnostic>> {
        self.file("teeform.yaml", manifest);
        self.load_file()
    }

    fn load_file(&self) -> Result<Config, Vec<Diagnostic>> {
        let env = self.env.clone();
        let opts = LoadOptions {
            vars: self.vars.clone(),
            env: Arc::new(move |k| env.get(k).cloned()),
            display_base: Some(self.dir.path().to_path_buf()),
            ..Default::default()
        };
        load(&self.dir.path().join("teeform.yaml"), &opts).map_err(|e| e.diagnostics)
    }

    /// The messages of a failed load, each as `line:col: message` (or the bare message).
    fn errors(&self, manifest: &str) -> Vec<String> {
        match self.load(manifest) {
            Ok(c) => panic!("expected errors for\n{manifest}\nwarnings: {:?}", shown(&c.warnings)),
            Err(d) => shown(&d),
        }
    }

    /// A loaded config's warnings, each as `file:line:col: message`.
    fn warnings(&self, manifest: &str) -> Vec<String> {
        match self.load(manifest) {
            Ok(c) => shown(&c.warnings),
            Err(d) => panic!("expected a valid manifest:\n{manifest}\n{:#?}", shown(&d)),
        }
    }

    /// The literal value of env `K` of the CVM `web`, for a value written as `value`.
    fn env_value(&self, value: &str) -> Result<String, Vec<String>> {
        let m = format!(
            "cvms:\n  web:\n    name: web-app\n    compose: web.yml\n    lint: {{ignore: [K]}}\n    env:\n      K: {value}\n"
        );
        match self.load(&m) {
            Ok(c) => Ok(c.cvms["web"].env["K"].as_literal().expect("a literal")),
            Err(d) => Err(shown(&d)),
        }
    }
}

fn shown(d: &[Diagnostic]) -> Vec<String> {
    d.iter().map(|d| d.to_string()).collect()
}

fn web(fields: &str) -> String {
    format!("cvms:\n  web:\n    name: web-app\n    compose: web.yml\n{fields}")
}

#[test]
fn string_values_are_the_scalar_as_written() {
    let p = Project::new();
    let cases: &[(&str, &str)] = &[
        // Number-like plain scalars keep every character.
        ("1.30", "1.30"),
        ("1.3", "1.3"),
        ("0755", "0755"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        (".inf", ".inf"),
        ("-.inf", "-.inf"),
        (".NaN", ".NaN"),
        ("0x1F", "0x1F"),
        ("0o17", "0o17"),
        ("1_000", "1_000"),
        ("+1", "+1"),
        ("-0", "-0"),
        ("2.50", "2.50"),
        ("1.", "1."),
        ("123456789012345678901234567890123", "123456789012345678901234567890123"),
        ("1:20", "1:20"),
        // YAML 1.1 words and booleans are text in a string field.
        ("yes", "yes"),
        ("No", "No"),
        ("on", "on"),
        ("OFF", "OFF"),
        ("y", "y"),
        ("True", "True"),
        ("false", "false"),
        // Quoted scalars are unescaped; tags decide.
        ("'1.30'", "1.30"),
        ("\"1.30\"", "1.30"),
        ("'it''s'", "it's"),
        ("\"a\\tb\\\\c\\\"d\"", "a\tb\\c\"d"),
        ("\"line\\nbreak\"", "line\nbreak"),
        ("\"\\u00e9\\u200b\"", "é\u{200b}"),
        ("\"\"", ""),
        ("''", ""),
        ("!!str 1.30", "1.30"),
        ("!!str null", "null"),
        ("!!str", ""),
        ("! 0755", "0755"),
        ("\"null\"", "null"),
        ("'~'", "~"),
        // Other text.
        ("a b  c", "a b  c"),
        ("$5 and {x}", "$5 and {x}"),
        ("$${X}", "${X}"),
        ("x=1", "x=1"),
        ("ü", "ü"),
        ("\"\u{a0}x\u{a0}\"", "\u{a0}x\u{a0}"),
        ("|\n        two\n        lines", "two\nlines\n"),
        ("|-\n        kept\n        as is", "kept\nas is"),
        (">-\n        folded\n        text", "folded text"),
    ];
    for (written, want) in cases {
        assert_eq!(p.env_value(written).as_deref(), Ok(*want), "{written}");
    }
}

#[test]
fn null_is_unset_where_optional_and_an_error_where_a_value_is_needed() {
    let p = Project::new();
    for written in ["", "~", "null", "NULL", "!!null x"] {
        let e = p.env_value(written).unwrap_err();
        assert_eq!(e.len(), 1, "{written:?}: {e:?}");
        assert!(e[0].contains("env `K` must be a string, found null"), "{written:?}: {e:?}");
    }
    let c = p
        .load(&format!(
            "backend: ~\nprovider:\n  phala:\n    endpoint: ~\n{}",
            web("    node: ~\n    instance_type:\n    vcpu: null\n    public_logs: ~\n    image: ~\n    pre_launch_script:\n    kms: ~\n    depends_on: ~\n    env: ~\n    lint: ~\n")
        ))
        .unwrap();
    assert_eq!((c.backend, c.endpoint), (None, Endpoint::Url(DEFAULT_API_PREFIX.into())));
    let w = &c.cvms["web"];
    assert_eq!(w.kms, Kms::Phala);
    assert!(
        w.attrs.node.is_none()
            && w.attrs.instance_type.is_none()
            && w.attrs.vcpu.is_none()
            && w.attrs.public_logs.is_none()
    );
    assert!(w.attrs.image.is_none() && w.pre_launch_script.is_none());
    // A null name is no name: the key is the name.
    let c = p.load("cvms:\n  web-app:\n    name: ~\n    compose: web.yml\n").unwrap();
    assert_eq!(c.cvms["web-app"].name, "web-app");
}

#[test]
fn number_fields_take_core_integers_and_show_what_they_refuse() {
    let p = Project::new();
    let ok: &[(&str, u32)] =
        &[("2", 2), ("+2", 2), ("0x10", 16), ("0o17", 15), ("\"4\"", 4), ("!!int \"8\"", 8), ("0", 0)];
    for (written, want) in ok {
        let c =
            p.load(&web(&format!("    gpus: {written}\n"))).unwrap_or_else(|e| panic!("{written}: {:?}", shown(&e)));
        assert_eq!(c.cvms["web"].attrs.gpus, Some(*want), "{written}");
    }
    let bad: &[(&str, &str)] = &[
        ("0755", "a leading zero makes `0755` octal in YAML 1.1 and decimal in YAML 1.2; write `755`"),
        // Out of range is said first: a hint to write `1000` would only lead to that error.
        ("1e3", "must be between 0 and 64, found 1e3"),
        ("1e1", "write it as a whole number: `10`"),
        ("2.0", "write it as a whole number: `2`"),
        ("1_000", "write `1000`"),
        ("lots", "found `lots`"),
        ("-1", "must be between 0 and 64, found -1"),
        ("99999999999999999999999999999999999999999", "found 99999999999999999999999999999999999999999"),
        ("true", "found a boolean"),
        ("[1]", "must be a single value, found a list"),
        ("!!binary aGk=", "the YAML tag `!!binary` is not supported"),
    ];
    for (written, want) in bad {
        let d = p.load(&web(&format!("    gpus: {written}\n"))).unwrap_err();
        assert_eq!(d.len(), 1, "{written}: {:?}", shown(&d));
        let all = format!("{} {}", d[0].message, d[0].hints.join(" "));
        assert!(all.contains(want), "{written}: {all}");
    }
}

#[test]
fn boolean_fields_take_yaml_1_1_words_too() {
    let p = Project::new();
    for (written, want) in [
        ("true", true),
        ("False", false),
        ("yes", true),
        ("No", false),
        ("on", true),
        ("OFF", false),
        ("\"true\"", true),
    ] {
        let c = p.load(&web(&format!("    public_logs: {written}\n"))).unwrap();
        assert_eq!(c.cvms["web"].attrs.public_logs, Some(want), "{written}");
    }
    for written in ["sometimes", "1", "y"] {
        let e = p.errors(&web(&format!("    public_logs: {written}\n")));
        assert!(e[0].contains("must be true or false"), "{written}: {e:?}");
    }
}

#[test]
fn variables_keep_their_text_inside_strings() {
    let m = "variables:\n  v: { default: 1.20 }\n  n: { default: 2 }\n  s: { type: string, default: 0755 }\ncvms:\n  web:\n    name: web-app\n    node: node-${var.v}\n    compose: web.yml\n    vcpu: ${var.n}\n    lint: {ignore: [A, B, C]}\n    env:\n      A: ${var.v}\n      B: v${var.s}\n      C: ${var.n}\n";
    let check = |p: Project, node: &str, a: &str| {
        let c = p.load(m).unwrap_or_else(|e| panic!("{:?}", shown(&e)));
        let w = &c.cvms["web"];
        assert_eq!(w.attrs.node.as_deref(), Some(node));
        assert_eq!(w.env["A"].as_literal().unwrap(), a);
        assert_eq!(w.env["B"].as_literal().unwrap(), "v0755");
        assert_eq!(w.env["C"].as_literal().unwrap(), "2");
        assert_eq!(w.attrs.vcpu, Some(2));
    };
    check(Project::new(), "node-1.20", "1.20");
    check(Project::new().var("v", "1.30"), "node-1.30", "1.30");
    check(Project::new().env("TEEFORM_VAR_v", "2.10"), "node-2.10", "2.10");
    // --var wins over the environment.
    check(Project::new().var("v", "0x1F").env("TEEFORM_VAR_v", "2.10"), "node-0x1F", "0x1F");
}

#[test]
fn a_bad_override_is_one_error() {
    let m = "variables:\n  x: { default: 2 }\ncvms:\n  web:\n    name: web-app\n    compose: web.yml\n    vcpu: ${var.x}\n    node: n-${var.x}\n";
    for p in [Project::new().var("x", "four"), Project::new().env("TEEFORM_VAR_x", "four")] {
        let e = p.errors(m);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].ends_with("=four: variable `x` is a number"), "{e:?}");
    }
    // A default of the wrong type is reported where it is written, once.
    let e = Project::new().errors("variables:\n  x: { type: number, default: abc }\ncvms:\n  web:\n    name: web-app\n    compose: web.yml\n    vcpu: ${var.x}\n");
    assert_eq!(e, ["teeform.yaml:2:31: the default of `x` is a string, not a number"]);
}

#[test]
fn a_byte_order_mark_is_not_content() {
    let p = Project::new();
    p.file("bom.yml", "\u{feff}services:\n  web:\n    image: nginx\n");
    p.file("value.txt", "\u{feff}v\n");
    p.file("pre.sh", "\u{feff}#!/bin/sh\n");
    p.bytes("teeform.yaml", "\u{feff}provider:\n  phala:\n    endpoint: local\ncvms:\n  web:\n    name: web-app\n    compose: bom.yml\n    pre_launch_script: pre.sh\n    lint: {ignore: [V]}\n    env:\n      V: ${file:value.txt}\n".as_bytes());
    let c = p.load_file().unwrap_or_else(|e| panic!("{:?}", shown(&e)));
    let w = &c.cvms["web"];
    assert_eq!(w.compose.content, "services:\n  web:\n    image: nginx\n");
    assert_eq!(w.pre_launch_script.as_ref().unwrap().content, "#!/bin/sh\n");
    assert_eq!(w.env["V"].as_literal().unwrap(), "v");
    assert_eq!(c.endpoint, Endpoint::Local);
}

#[test]
fn file_values_drop_one_final_line_break() {
    let p = Project::new();
    for (content, want) in [
        ("v", "v"),
        ("v\n", "v"),
        ("v\r\n", "v"),
        ("v\n\n", "v\n"),
        ("-----BEGIN-----\nA\n-----END-----\n", "-----BEGIN-----\nA\n-----END-----"),
    ] {
        p.file("f.txt", content);
        assert_eq!(p.env_value("${file:f.txt}").as_deref(), Ok(want), "{content:?}");
    }
}

#[test]
fn credentials_are_refused_outside_secrets() {
    let p = Project::new().env("PHALA_CLOUD_API_KEY", "key").env("MY_SIGNER", "0xabc").env("HOME", "/h");
    for var in ["PHALA_CLOUD_API_KEY", "PRIVATE_KEY", "ETH_RPC_URL", "TEEFORM_PG_CONN", "PHALA_OIDC_TOKEN", "MY_SIGNER"]
    {
        let m = format!(
            "cvms:\n  web:\n    name: web-app\n    compose: web.yml\n    kms: {{chain: base, private_key_env: MY_SIGNER}}\n    env:\n      K: x${{env:{var}}}\noutputs:\n  o: ${{env:{var}}}\n"
        );
        let e = p.errors(&m);
        assert_eq!(e.len(), 2, "{var}: {e:?}");
        assert!(e.iter().all(|e| e.contains(&format!("teeform's own credential {var}"))), "{e:?}");
        assert!(e.iter().all(|e| !e.contains("0xabc") && !e.contains(": key")), "{e:?}");
    }
    // Where a secret cannot go, the hint says how teeform reads the credential itself.
    let d = p.load(&web("    kms: {chain: base, rpc_url: \"${env:ETH_RPC_URL}\"}\n")).unwrap_err();
    assert_eq!(d.len(), 1, "{:?}", shown(&d));
    assert!(d[0].hints[0].contains("an RPC URL from `rpc_url_env`"), "{:?}", d[0].hints);
    // As a secret it is the user's explicit choice, encrypted for the CVM.
    let c = p
        .load(&web(
            "    lint: {ignore: [K, H]}\n    env:\n      K: ${secret:env:PHALA_CLOUD_API_KEY}\n      H: ${env:HOME}\n",
        ))
        .unwrap();
    assert_eq!(c.cvms["web"].env["H"].as_literal().unwrap(), "/h");
}

#[test]
fn files_outside_the_tree_or_not_regular_are_refused_without_content() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("shared.yml"), WEB).unwrap();
    std::fs::write(root.path().join("leak.txt"), "TOPSECRET line\n").unwrap();
    let p = Project { dir: tempfile::tempdir_in(root.path()).unwrap(), vars: Vec::new(), env: BTreeMap::new() };
    p.file("web.yml", WEB);
    std::fs::create_dir(p.dir.path().join("adir")).unwrap();
    let fifo = std::ffi::CString::new(p.dir.path().join("fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let cases: &[(&str, &str)] = &[
        (
            "    compose: ../shared.yml\n",
            "cannot read compose file `../shared.yml`: it is outside the manifest's directory",
        ),
        (
            "    compose: /etc/passwd\n",
            "cannot read compose file `/etc/passwd`: it is outside the manifest's directory",
        ),
        (
            "    compose: /dev/zero\n",
            "cannot read compose file `/dev/zero`: files under /proc, /sys and /dev are never read",
        ),
        ("    compose: fifo\n", "cannot read compose file `fifo`: it is a FIFO, not a regular file"),
        ("    compose: adir\n", "cannot read compose file `adir`: it is a directory, not a regular file"),
        (
            "    compose: web.yml\n    pre_launch_script: ../leak.txt\n",
            "cannot read pre-launch script `../leak.txt`: it is outside",
        ),
        (
            "    compose: web.yml\n    env:\n      K: ${file:/proc/self/environ}\n",
            "cannot read file `/proc/self/environ`: files under /proc",
        ),
        (
            "    compose: web.yml\n    env:\n      K: ${file:../leak.txt}\n",
            "cannot read file `../leak.txt`: it is outside",
        ),
        (
            "    compose: web.yml\n    env:\n      K: ${secret:file:../leak.txt}\n",
            "cannot read secret file `../leak.txt`: it is outside",
        ),
    ];
    for (fields, want) in cases {
        let e = p.errors(&format!("cvms:\n  web:\n    name: web-app\n{fields}"));
        assert_eq!(e.len(), 1, "{fields}: {e:?}");
        assert!(e[0].contains(want), "{fields}: {e:?}");
        let rendered: String = p
            .load(&format!("cvms:\n  web:\n    name: web-app\n{fields}"))
            .unwrap_err()
            .iter()
            .map(|d| d.render(false))
            .collect();
        assert!(!rendered.contains("TOPSECRET") && !rendered.contains("root:"), "{rendered}");
    }
    // Allowing the parent directory lets the manifest read from it; /dev stays closed.
    let c = p.load("allowed_dirs: [..]\ncvms:\n  web:\n    name: web-app\n    compose: ../shared.yml\n").unwrap();
    assert_eq!(c.cvms["web"].compose.content, WEB);
    assert_eq!(c.allowed_dirs, [std::path::PathBuf::from("..")]);
    let e = p.errors("allowed_dirs: [/]\ncvms:\n  web:\n    name: web-app\n    compose: /dev/zero\n");
    assert!(e[0].contains("never read"), "{e:?}");
    let e = p.errors("allowed_dirs: [nope]\ncvms:\n  web:\n    name: web-app\n    compose: web.yml\n");
    assert!(e[0].contains("allowed directory `nope` is not a directory"), "{e:?}");
}

#[test]
fn sizes_are_checked_before_any_call() {
    let p = Project::new();
    let big = format!("services:\n  web:\n    image: nginx\n    labels:\n      x: \"{}\"\n", "a".repeat(205_000));
    p.file("big.yml", &big);
    let e = p.errors("cvms:\n  web:\n    name: web-app\n    compose: big.yml\n");
    assert_eq!(e, ["teeform.yaml:4:14: cannot read compose file `big.yml`: it is larger than 200 KiB"]);
    let half = format!("services:\n  web:\n    image: nginx\n    labels:\n      x: \"{}\"\n", "a".repeat(120_000));
    p.file("half.yml", &half).file("pre.sh", &format!("#!/bin/sh\n# {}\n", "b".repeat(90_000)));
    let e = p.errors("cvms:\n  web:\n    name: web-app\n    compose: half.yml\n    pre_launch_script: pre.sh\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(
            "cvm.web: the compose file and pre-launch script are 206 KiB together; the API accepts at most 200 KiB"
        ),
        "{e:?}"
    );
}

#[test]
fn one_broken_file_is_one_error_however_many_cvms_share_it() {
    let p = Project::new();
    p.file("broken.yml", "services:\n  web: [unclosed\n");
    let mut m = String::from("cvms:\n");
    for i in 0..1000 {
        m.push_str(&format!(
            "  c{i:04}:\n    name: cvm-{i:04}\n    compose: broken.yml\n    pre_launch_script: missing.sh\n"
        ));
    }
    let d = p.load(&m).unwrap_err();
    assert_eq!(d.len(), 2, "{:#?}", shown(&d));
    let missing = d.iter().find(|d| d.message.contains("missing.sh")).unwrap();
    assert_eq!(missing.also.len(), 3);
    assert!(missing.hints.iter().any(|h| h == "999 more places name this file (996 not shown)"), "{:?}", missing.hints);
    let broken = d.iter().find(|d| d.message.starts_with("invalid compose YAML")).unwrap();
    assert_eq!(broken.location().unwrap(), "broken.yml:3:1");
    assert_eq!(broken.also.len(), 3);
    assert!(
        broken.hints.iter().any(|h| h == "the file is used by cvm.c0000, cvm.c0001, cvm.c0002 and 997 more"),
        "{:?}",
        broken.hints
    );
}

#[test]
fn names_the_api_treats_as_equal_are_errors_at_both() {
    let p = Project::new();
    let d = p.load("cvms:\n  a:\n    name: Shop-Web\n    compose: web.yml\n  b:\n    name: shop-web\n    compose: web.yml\n  shop-web:\n    compose: web.yml\n").unwrap_err();
    assert_eq!(shown(&d), ["teeform.yaml:6:11: cvm.a and cvm.b have the same name `shop-web` (as `Shop-Web`)"]);
    let also: Vec<String> = d[0]
        .also
        .iter()
        .map(|r| {
            let (l, c) = r.source.line_col(r.span.start);
            format!("{l}:{c} {}", r.label)
        })
        .collect();
    assert_eq!(also, ["3:11 cvm.a's name", "8:3 and cvm.shop-web's"]);
}

#[test]
fn invalid_names_get_a_valid_suggestion() {
    let p = Project::new();
    for (key, want) in [
        ("my_db", "e.g. `name: my-db`"),
        ("x_y", "e.g. `name: x-y-app`"),
        ("db", "e.g. `name: db-app`"),
        ("9lives", "e.g. `name: cvm-9lives`"),
        ("a--b", "e.g. `name: a-b-app`"),
    ] {
        let d = p.load(&format!("cvms:\n  {key}:\n    compose: web.yml\n")).unwrap_err();
        assert!(d[0].hints.iter().any(|h| h.starts_with(want)), "{key}: {:?}", d[0].hints);
        let name = want.trim_start_matches("e.g. `name: ").split('`').next().unwrap();
        assert!(valid_cvm_name(name), "{name}");
    }
}

#[test]
fn hostile_yaml_is_an_error_not_a_crash() {
    let p = Project::new();
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 10].join(", ")));
    }
    bomb.push_str("cvms: {}\n");
    let e = p.errors(&bomb);
    assert!(e[0].contains("aliases expand this document to more than"), "{e:?}");
    let deep = format!("cvms: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let e = p.errors(&deep);
    assert!(e[0].contains("nest deeper than 128 levels") || e[0].contains("recursion limit exceeded"), "{e:?}");
    let deep = format!("cvms:\n{}", (0..200).map(|i| format!("{}k{i}:\n", " ".repeat(2 * i + 2))).collect::<String>());
    let e = p.errors(&deep);
    assert!(e[0].contains("nest deeper than 128 levels"), "{e:?}");
    p.file("bomb.yml", &format!("services: {{}}\n{}", bomb.replace("cvms: {}\n", "")));
    let e = p.errors("cvms:\n  web:\n    name: web-app\n    compose: bomb.yml\n");
    assert!(e[0].contains("bomb.yml") && e[0].contains("aliases expand"), "{e:?}");
}

#[test]
fn syntax_errors_point_at_the_character() {
    let p = Project::new();
    let cases: &[(&str, &str)] = &[
        ("cvms:\n  web:\n    name: web-app\n\tcompose: web.yml\n", "teeform.yaml:4:1"),
        ("cvms:\n\tweb: {}\n", "teeform.yaml:2:1"),
        ("cvms: {}\nx: \"a\u{1}b\"\n", "teeform.yaml:2:6"),
        ("cvms: {}\n# \u{7f}\n", "teeform.yaml:2:3"),
    ];
    for (m, at) in cases {
        let e = p.errors(m);
        assert!(e[0].starts_with(at), "{m:?}: {e:?}");
    }
    p.file("ctl.yml", "services:\n  web:\n    image: nginx\n    command: \"a\u{1}\"\n");
    let e = p.errors("cvms:\n  web:\n    name: web-app\n    compose: ctl.yml\n");
    assert!(e[0].starts_with("ctl.yml:4:16: invalid compose YAML: the control character U+0001"), "{e:?}");
}

/// Compose lint cases: the compose file, the env of the CVM, and each finding shown as
/// `file:line:col: message` (errors and warnings together, in order).
#[test]
fn compose_variables_against_env_keys() {
    struct Case {
        compose: &'static str,
        env: &'static str,
        want: &'static [&'static str],
    }
    let cases = [
        Case {
            compose: "services:\n  s:\n    image: x\n    environment:\n      B: \"${BUCKET_PREFIX:?required}\"\n",
            env: "",
            want: &[
                "c.yml:5:11: `${BUCKET_PREFIX:?required}` requires env key `BUCKET_PREFIX`, which cvm.web does not set",
            ],
        },
        Case { compose: "services:\n  s:\n    image: x:${TAG?set it}\n", env: "      TAG: v1\n", want: &[] },
        Case {
            compose: "services:\n  s:\n    image: x\n    command: run ${NEED:?x}\n",
            env: "      NEED: \"\"\n",
            want: &["teeform.yaml:6:13: env `NEED` of cvm.web is empty, but the compose file requires a value"],
        },
        Case {
            compose: "services:\n  s:\n    image: x\n    command: run ${NEED?x}\n",
            env: "      NEED: \"\"\n",
            want: &[],
        },
        Case {
            compose: "services:\n  s:\n    image: $IMAGE\n",
            env: "",
            want: &["c.yml:3:12: `$IMAGE` has no env key in cvm.web, so it expands to an empty string"],
        },
        Case {
            compose: "services:\n  s:\n    image: ${IMAGE:-nginx}\n    x: ${A-}${B:+y}${C+z}\n",
            env: "",
            want: &[],
        },
        Case {
            compose: "services:\n  s:\n    image: nginx\n",
            env: "      LOG_LEVEL: info\n",
            want: &[
                "teeform.yaml:6:7: env key `LOG_LEVEL` of cvm.web is used by neither its compose file nor its pre-launch script",
            ],
        },
        Case {
            compose: "services:\n  s:\n    image: nginx\n    environment: [\"BUCKET=${BUCKET_PREFIX}\"]\n",
            env: "      BUCKET_PREFX: x\n",
            want: &[
                "c.yml:4:27: `${BUCKET_PREFIX}` has no env key in cvm.web, so it expands to an empty string",
                "teeform.yaml:6:7: env key `BUCKET_PREFX` of cvm.web is used by neither its compose file nor its pre-launch script",
            ],
        },
        // Keys are not interpolated, `$$` is a literal, platform keys are known.
        Case {
            compose: "services:\n  s:\n    image: nginx\n    labels:\n      $$X: \"$$Y and $${Z}\"\n      ${K}: v\n",
            env: "      DSTACK_DOCKER_REGISTRY: ghcr.io\n",
            want: &[],
        },
        Case { compose: "services:\n  s:\n    image: ${DSTACK_APP_ID}\n", env: "", want: &[] },
        Case {
            compose: "services:\n  s:\n    image: ${X/y/z}\n",
            env: "",
            want: &["c.yml:3:12: docker compose cannot interpolate `${X/y/z}`"],
        },
    ];
    for c in cases {
        let p = Project::new();
        p.file("c.yml", c.compose);
        let env = if c.env.is_empty() { String::new() } else { format!("    env:\n{}", c.env) };
        let m = format!("cvms:\n  web:\n    name: web-app\n    compose: c.yml\n{env}");
        let got = match p.load(&m) {
            Ok(cfg) => shown(&cfg.warnings),
            Err(d) => shown(&d),
        };
        assert_eq!(got, c.want, "{}\n{env}", c.compose);
    }
}

#[test]
fn lint_findings_have_hints_and_can_be_silenced() {
    let p = Project::new();
    p.file("c.yml", "services:\n  s:\n    image: nginx\n    environment: [\"A=${BUCKET_PREFIX}\", \"B=$B\"]\n");
    p.file("pre.sh", "#!/bin/sh\necho \"$FROM_SCRIPT\"\n");
    let m = "cvms:\n  web:\n    name: web-app\n    compose: c.yml\n    pre_launch_script: pre.sh\n    env:\n      BUCKET_PREFX: x\n      FROM_SCRIPT: y\n";
    let cfg = p.load(m).unwrap();
    let hints: Vec<&String> = cfg.warnings.iter().flat_map(|w| &w.hints).collect();
    assert!(hints.iter().any(|h| h.starts_with("did you mean env key `BUCKET_PREFX`?")), "{hints:#?}");
    assert!(hints.iter().any(|h| h.starts_with("did you mean `BUCKET_PREFIX`?")), "{hints:#?}");
    assert_eq!(cfg.warnings.len(), 3, "{:#?}", shown(&cfg.warnings));
    let quiet = m.replace("    env:\n", "    lint:\n      ignore: [BUCKET_PREFIX, BUCKET_PREFX, B]\n    env:\n");
    assert_eq!(p.warnings(&quiet), Vec::<String>::new());
    // Errors cannot be silenced.
    p.file("r.yml", "services:\n  s:\n    image: ${R:?}\n");
    let e = p.errors("cvms:\n  web:\n    name: web-app\n    compose: r.yml\n    lint: {ignore: [R]}\n");
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn shared_compose_findings_are_grouped() {
    let p = Project::new();
    p.file("c.yml", "services:\n  s:\n    image: x:${TAG:?}\n");
    let mut m = String::from("cvms:\n");
    for i in 0..50 {
        m.push_str(&format!("  c{i:02}:\n    name: cvm-{i:04}\n    compose: c.yml\n    env:\n      UNUSED: x\n"));
    }
    let d = p.load(&m).unwrap_err();
    let shown = shown(&d);
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert_eq!(
        shown[0],
        "c.yml:3:14: `${TAG:?}` requires env key `TAG`, which cvm.c00, cvm.c01, cvm.c02 and 47 more do not set"
    );
    assert!(shown[1].starts_with("teeform.yaml:6:7: env key `UNUSED` of cvm.c00"), "{shown:#?}");
    assert!(d[1].hints.iter().any(|h| h == "unused in cvm.c00, cvm.c01, cvm.c02 and 47 more"), "{:?}", d[1].hints);
}

/// Messages from a manifest of `n` CVMs where the second has invalid compose YAML and a bad
/// vcpu, and the second-to-last a compose file without services and a bad memory size.
fn messages(n: usize) -> Vec<String> {
    let p = Project::new();
    p.file("good.yml", "services:\n  web:\n    image: nginx\n");
    p.file("broken.yml", "services:\n  web: [unclosed\n");
    p.file("empty.yml", "volumes: {}\n");
    let mut m = String::from("cvms:\n");
    for i in 0..n {
        let (compose, extra) = match i {
            1 => ("broken.yml", "    vcpu: 0\n"),
            i if i == n - 2 => ("empty.yml", "    memory: 1\n"),
            _ => ("good.yml", ""),
        };
        m.push_str(&format!("  cvm-{i:03}:\n    name: cvm-{i:03}-app\n    compose: {compose}\n{extra}"));
    }
    p.load(&m).expect_err("errors").iter().map(|d| d.message.clone()).collect()
}

#[test]
fn compose_findings_stay_in_manifest_order_however_they_are_checked() {
    // 4 CVMs are checked inline; 70 are spread over threads.
    for n in [4, 70] {
        let got = messages(n);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].starts_with("invalid compose YAML"), "{got:#?}");
        assert!(got[1].contains("vcpu") && got[1].contains("between 1 and 256"), "{got:#?}");
        assert_eq!(got[2], "a docker-compose file needs a `services:` mapping");
        assert!(got[3].contains("memory"), "{got:#?}");
    }
}

#[test]
fn the_manifest_itself_is_read_safely() {
    let d = tempfile::tempdir().unwrap();
    let opts = LoadOptions { env: Arc::new(|_| None), ..Default::default() };
    let e = load(d.path(), &opts).unwrap_err();
    assert!(
        e.diagnostics[0].message.ends_with("it is a directory, not a regular file"),
        "{:?}",
        e.diagnostics[0].message
    );
    let e = load(Path::new("/dev/zero"), &opts).unwrap_err();
    assert!(e.diagnostics[0].message.ends_with("it is a device, not a regular file"), "{:?}", e.diagnostics[0].message);
}

#[test]
fn a_compose_file_not_named_as_yaml_is_never_quoted() {
    let p = Project::new();
    p.file("secrets.env", "PASSWORD=hunter2\nservices: [\n");
    p.file("app.env", "services:\n  s:\n    image: x\n    command: \"${TOKEN:?hunter2}\"\n");
    for compose in ["secrets.env", "app.env"] {
        let d = p.load(&format!("cvms:\n  web:\n    name: web-app\n    compose: {compose}\n")).unwrap_err();
        let rendered: String = d.iter().map(|d| d.render(false)).collect();
        assert!(rendered.contains(&format!("--> {compose}:")), "{rendered}");
        assert!(!rendered.contains("PASSWORD") && !rendered.contains("hunter2"), "{rendered}");
    }
}

/// `moved:` entries: what a user can write, and the one diagnostic each mistake gets where it
/// is written.
#[test]
fn moved_entries_are_checked_where_they_are_written() {
    let p = Project::new();
    let two =
        "cvms:\n  web:\n    name: web-app\n    compose: web.yml\n  api:\n    name: api-app\n    compose: web.yml\n";
    let ok = p
        .load(&format!("{two}moved:\n  - from: cvm.old\n    to: cvm.web\n  - {{from: cvm.older, to: cvm.api}}\n"))
        .unwrap();
    let got: Vec<(&str, &str)> = ok.moved.iter().map(|m| (m.from.as_str(), m.to.as_str())).collect();
    assert_eq!(got, [("cvm.old", "cvm.web"), ("cvm.older", "cvm.api")]);
    // Instances one by one: `cvm.a[0]` and `cvm.a[1]` name different CVMs.
    let instances = "moved:\n  - {from: 'cvm.a[0]', to: 'cvm.web[0]'}\n  - {from: 'cvm.a[1]', to: 'cvm.web[1]'}\n";
    assert_eq!(p.load(&format!("{two}{instances}")).unwrap().moved.len(), 2);
    assert!(p.load(&format!("{two}moved: []\n")).unwrap().moved.is_empty());
    assert!(p.load(&format!("{two}moved:\n")).unwrap().moved.is_empty());
    let cases: &[(&str, &[&str])] = &[
        ("moved: {from: cvm.a, to: cvm.web}\n", &["8:8: `moved` must be a list"]),
        ("moved:\n  - from: cvm.old\n", &["9:5: a `moved` entry needs `to`"]),
        ("moved:\n  - to: cvm.web\n", &["9:5: a `moved` entry needs `from`"]),
        ("moved:\n  - {from: old, to: cvm.web}\n", &["9:12: `old` is not a CVM address"]),
        ("moved:\n  - {from: cvm.old, to: cvm.web, by: me}\n", &["9:34: unknown key `by` in a `moved` entry"]),
        ("moved:\n  - {from: cvm.web, to: cvm.web}\n", &["9:6: cvm.web is moved to itself"]),
        ("moved:\n  - {from: cvm.api, to: cvm.web}\n", &["9:6: cvm.api is still declared under `cvms:`"]),
        ("moved:\n  - {from: cvm.old, to: cvm.wbe}\n", &["9:6: cvm.old is moved to cvm.wbe, which is not declared"]),
        (
            "moved:\n  - {from: cvm.a, to: cvm.web}\n  - {from: cvm.a, to: cvm.api}\n",
            &["10:6: two `moved` entries have `from: cvm.a`"],
        ),
        (
            "moved:\n  - {from: cvm.a, to: cvm.web}\n  - {from: cvm.b, to: cvm.web}\n",
            &["10:6: two `moved` entries have `to: cvm.web`"],
        ),
        (
            "moved:\n  - {from: cvm.a, to: cvm.web}\n  - {from: 'cvm.a[1]', to: cvm.api}\n",
            &["10:6: two `moved` entries name one CVM in `from`: cvm.a and cvm.a[1]"],
        ),
        (
            "moved:\n  - {from: 'cvm.a[0]', to: 'cvm.web[0]'}\n  - {from: cvm.b, to: cvm.web}\n",
            &["10:6: two `moved` entries name one CVM in `to`: cvm.web[0] and cvm.web"],
        ),
        (
            "moved:\n  - {from: cvm.a, to: cvm.b}\n  - {from: cvm.b, to: cvm.web}\n",
            &["9:6: `moved` entries form a chain: cvm.a → cvm.b → cvm.web"],
        ),
        (
            "moved:\n  - {from: cvm.a, to: cvm.b}\n  - {from: cvm.b, to: cvm.a}\n",
            &["9:6: `moved` entries form a cycle: cvm.a → cvm.b → cvm.a"],
        ),
    ];
    for (moved, want) in cases {
        let errors = p.errors(&format!("{two}{moved}"));
        assert_eq!(errors.len(), want.len(), "{moved}: {errors:#?}");
        for (e, w) in errors.iter().zip(*want) {
            assert!(e.contains(w), "{moved}: {e:?} does not contain {w:?}");
        }
    }
}

#[test]
fn lifecycle_takes_prevent_destroy() {
    let p = Project::new();
    assert!(!p.load(&web("")).unwrap().cvms["web"].prevent_destroy);
    assert!(p.load(&web("    lifecycle:\n      prevent_destroy: true\n")).unwrap().cvms["web"].prevent_destroy);
    assert!(!p.load(&web("    lifecycle: {prevent_destroy: false}\n")).unwrap().cvms["web"].prevent_destroy);
    let e = p.errors(&web("    lifecycle:\n      prevent_destroy: maybe\n"));
    assert!(e[0].contains("lifecycle.prevent_destroy must be true or false"), "{e:?}");
    let e = p.errors(&web("    lifecycle:\n      prevent_destory: true\n"));
    assert!(e[0].contains("unknown key `prevent_destory`") && e.len() == 1, "{e:?}");
}

mod env_file;
mod nulls;
mod policy;

#[test]
fn verify_settings_take_a_pccs_and_intel_statuses_and_point_at_what_is_wrong() {
    let p = Project::new();
    let ok = |head: &str| p.load(&format!("{head}{}", web(""))).unwrap().verify;
    assert_eq!(ok(""), crate::manifest::VerifySettings::default());
    assert_eq!(ok("verify:\n"), crate::manifest::VerifySettings::default());
    let v = ok("verify:\n  pccs_url: phala\n  allow_tcb_status: [OutOfDate, \"Revoked\"]\n");
    assert_eq!(v.pccs_url.as_deref(), Some("phala"));
    assert_eq!(v.allow_tcb_status, ["OutOfDate", "Revoked"]);
    let pv = Project::new().var("pccs", "https://pccs.example:8081/tdx/certification/v4/");
    assert_eq!(
        pv.load(&format!("verify: {{pccs_url: \"${{var.pccs}}\"}}\nvariables: {{pccs: {{}}}}\n{}", web("")))
            .unwrap()
            .verify
            .pccs_url
            .as_deref(),
        Some("https://pccs.example:8081/tdx/certification/v4/")
    );
    let cases: &[(&str, &str)] = &[
        ("verify:\n  pccs_url: pccs.example\n", "is not a URL"),
        ("verify:\n  pccs_url: ftp://pccs.example\n", "not an http(s) URL"),
        ("verify:\n  pccs_url: \"https://p.example/?k=1\"\n", "has a query or fragment"),
        ("verify:\n  allow_tcb_status: [OutOfdate]\n", "`OutOfdate` is not a TCB status"),
        ("verify:\n  allow_tcb_status: OutOfDate\n", "must be a list of TCB statuses"),
        ("verify:\n  pccs: phala\n", "pccs"),
        ("verify: phala\n", "verify"),
    ];
    for (head, want) in cases {
        let errs = p.errors(&format!("{head}{}", web("")));
        assert_eq!(errs.len(), 1, "{head}: {errs:#?}");
        assert!(errs[0].contains(want), "{head}: {errs:#?}");
        assert!(errs[0].contains("teeform.yaml:2:") || errs[0].contains("teeform.yaml:1:"), "{head}: {errs:#?}");
    }
    let hint = p.load(&format!("verify:\n  allow_tcb_status: [OutOfdate]\n{}", web(""))).unwrap_err();
    assert!(hint[0].hints.iter().any(|h| h.contains("did you mean `OutOfDate`?")), "{:?}", hint[0].hints);
}
