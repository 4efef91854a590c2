//! `env_file:` on a CVM: one path or a list, plain or secret, `env:` winning, errors at the
//! env file's line and column without its content.

use super::*;
use crate::manifest::Ref;

/// The compose file uses every key the tests set, so the lint is quiet.
const USES: &str = "services:\n  web:\n    image: nginx\n    environment:\n      - A=${A}\n      - B=${B}\n      - C=${C}\n      - PW=${PW}\n";

fn project() -> Project {
    let p = Project::new();
    p.file("web.yml", USES);
    p
}

/// Env `key` of `cvm.web`: its literal value, or the reference standing for it.
fn env(c: &Config, key: &str) -> Result<String, Ref> {
    let t = &c.cvms["web"].env[key];
    t.as_literal().ok_or_else(|| t.sole_ref().expect("one reference").clone())
}

#[test]
fn one_file_or_a_list_later_files_and_env_winning() {
    let p = project();
    p.file("web.yml", &USES.replace("      - PW=${PW}\n", ""));
    p.file(".env", "# shared\nexport A=from-env-file\nB=\"two # words\"\nC='${A}'\n");
    p.file("local.env", "B=local\r\n");
    let c = p.load(&web("    env_file: .env\n")).unwrap();
    assert_eq!(env(&c, "A"), Ok("from-env-file".into()));
    assert_eq!(env(&c, "B"), Ok("two # words".into()));
    assert_eq!(env(&c, "C"), Ok("${A}".into()));
    let c = p.load(&web("    env_file: [.env, local.env]\n    env:\n      A: from-manifest\n")).unwrap();
    assert_eq!(env(&c, "A"), Ok("from-manifest".into()), "env: wins over env files");
    assert_eq!(env(&c, "B"), Ok("local".into()), "a later file wins");
    // The same whichever is written first.
    let c = p.load(&web("    env:\n      A: from-manifest\n    env_file: [{path: .env}, local.env]\n")).unwrap();
    assert_eq!(env(&c, "A"), Ok("from-manifest".into()));
    assert!(c.warnings.is_empty(), "{:?}", shown(&c.warnings));
}

#[test]
fn a_secret_files_values_stay_out_of_the_config() {
    let p = project();
    p.file("secrets.env", "PW=\"hunter2-secret\"\nA=also-secret\n");
    let c = p.load(&web("    env_file:\n      - {path: secrets.env, secret: true}\n")).unwrap();
    assert_eq!(env(&c, "PW"), Err(Ref::SecretEnvFile { path: "secrets.env".into(), key: "PW".into() }));
    assert!(!format!("{:?}", c.cvms["web"]).contains("hunter2"), "no value in the config");
    // Read when secrets are read, as `${secret:file:}` is.
    let refs: Vec<Ref> = c.cvms["web"].env.values().flat_map(|t| t.refs().cloned()).collect();
    let got = crate::secrets::read_all(&refs, &c.file_policy(), &|_| None).unwrap();
    assert_eq!(got[&refs[1]].expose(), "hunter2-secret");
    // Gone from the file at plan time: an error naming the key, not a value.
    p.file("secrets.env", "A=x\n");
    let errs = crate::secrets::read_all(&refs, &c.file_policy(), &|_| None).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("no longer sets PW"), "{errs:?}");
    p.file("secrets.env", "A=x\nPW='hunter2\n");
    let errs = crate::secrets::read_all(&refs, &c.file_policy(), &|_| None).unwrap_err();
    assert!(errs[0].contains("line 2, column 4") && !errs[0].contains("hunter2"), "{errs:?}");
}

#[test]
fn problems_point_into_the_env_file_without_its_content() {
    let p = project();
    p.file("bad.env", "A=1\nB=$UNSET_X\nC='never closed s3cret\n");
    p.file("keys.env", "A=1\nfoo.bar=2\n");
    let cases: &[(&str, &[&str])] = &[
        (
            "    env_file: bad.env\n",
            &["bad.env:2:3: `UNSET_X` is not set above this line", "bad.env:3:3: the value of `C` has no closing '"],
        ),
        ("    env_file: keys.env\n", &["keys.env:2:1: `foo.bar` is not a valid environment variable name"]),
        ("    env_file: missing.env\n", &["teeform.yaml:5:15: cannot read env file `missing.env`: no such file"]),
        ("    env_file: ../outside.env\n", &["cannot read env file `../outside.env`: it is outside"]),
        ("    env_file: [{secret: true}]\n", &["an env_file entry needs a `path`"]),
        ("    env_file: [{path: a.env, secrets: true}]\n", &["unknown key"]),
        ("    env_file: {path: bad.env, secret: maybe}\n", &["must be true or false"]),
    ];
    for (fields, want) in cases {
        let errs = p.errors(&web(fields));
        for w in *want {
            assert!(errs.iter().any(|e| e.contains(w)), "{fields}: want {w:?} in {errs:#?}");
        }
    }
    // Rendered: the env file's place, and the manifest line that names it; no line of the file.
    let Err(d) = p.load(&web("    env_file: bad.env\n")) else { panic!() };
    let text = d.iter().find(|d| d.message.contains("no closing")).unwrap().render(false);
    assert!(text.contains("bad.env:3:3") && text.contains("read by cvm.web"), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("never closed"), "{text}");
}

#[test]
fn a_file_is_secret_everywhere_or_nowhere() {
    let p = project();
    p.file(".env", "A=1\n");
    let m = "cvms:\n  web:\n    name: web-app\n    compose: web.yml\n    env_file: {path: .env, secret: true}\n  api:\n    name: api-app\n    compose: web.yml\n    env_file: .env\n";
    let errs = p.errors(m);
    assert!(
        errs.iter().any(|e| e.ends_with("9:15: env file `.env` is secret for cvm.web but not for cvm.api")),
        "{errs:#?}"
    );
}

/// A file read in plain by one CVM and named secret by a later one: its problems are worded
/// as a secret file's, whichever CVM came first.
#[test]
fn a_file_secret_anywhere_has_its_problems_worded_as_secret() {
    let p = project();
    p.file(
        ".env",
        "A=x$CANARYname
CANARYline
",
    );
    for (first, second) in [(".env", "{path: .env, secret: true}"), ("{path: .env, secret: true}", ".env")] {
        let m = format!(
            "cvms:\n  web:\n    name: web-app\n    compose: web.yml\n    env_file: {first}\n  api:\n    name: api-app\n    compose: web.yml\n    env_file: {second}\n"
        );
        let errs = p.errors(&m);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs.iter().all(|e| !e.contains("CANARY")), "{errs:#?}");
        assert!(errs[0].contains(".env:1:4: a `$` in `A`'s value"), "{errs:#?}");
        assert!(errs[1].contains(".env:2:1: a line with no `=`"), "{errs:#?}");
    }
}

#[test]
fn env_file_keys_count_for_the_compose_lint() {
    let p = project();
    p.file(".env", "A=1\nB=2\nC=\nPW=x\nTYPO=1\n");
    p.file("web.yml", "services:\n  web:\n    image: nginx\n    environment:\n      - A=${A}\n      - B=${B}\n      - C=${C:?set C}\n      - PW=${PW}\n");
    let errs = p.errors(&web("    env_file: .env\n"));
    assert!(errs.iter().any(|e| e.contains("env `C` of cvm.web is empty")), "{errs:#?}");
    p.file(".env", "A=1\nB=2\nC=3\nPW=x\nTYPO=1\n");
    let w = p.warnings(&web("    env_file: .env\n"));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("teeform.yaml:5:15: env key `TYPO` of cvm.web is used by neither"), "{w:#?}");
}

#[test]
fn a_path_may_name_the_workspace_or_a_variable() {
    let p = project().var("stage", "prod");
    p.file("web.yml", &USES.replace("      - PW=${PW}\n", "").replace("      - B=${B}\n      - C=${C}\n", ""));
    p.file("env/default.env", "A=from-default\n");
    p.file("env/prod.env", "A=from-prod\n");
    let vars = "variables:\n  stage: {default: dev}\n";
    let c = p.load(&format!("{vars}{}", web("    env_file: env/${workspace}.env\n"))).unwrap();
    assert_eq!(env(&c, "A"), Ok("from-default".into()));
    let c = p.load(&format!("{vars}{}", web("    env_file: [{path: \"env/${var.stage}.env\"}]\n"))).unwrap();
    assert_eq!(env(&c, "A"), Ok("from-prod".into()));
}

#[test]
fn a_value_reading_a_name_env_also_sets_is_an_error() {
    let p = project();
    p.file(".env", "A=file-a\nB=${A}-b\nC=${NOPE:-${A}}\n");
    // compose would read `env:`'s A inside the file; teeform would read the file's.
    let errs = p.errors(&web("    env_file: .env\n    env:\n      A: manifest-a\n"));
    assert_eq!(
        errs.iter().filter(|e| e.contains("reads `${A}`, which cvm.web's `env:` sets too")).count(),
        2,
        "{errs:#?}"
    );
    // Secret: the value's names are not shown, the key is.
    let errs = p.errors(&web("    env_file: {path: .env, secret: true}\n    env:\n      A: manifest-a\n"));
    let hits: Vec<_> = errs
        .iter()
        .filter(|e| e.contains("in secret env file `.env` reads a name cvm.web's `env:` sets too"))
        .collect();
    assert_eq!(hits.len(), 2, "{errs:#?}");
    assert!(hits[0].contains("`B`") && hits.iter().all(|e| !e.contains("${A}")), "{errs:#?}");
    // No `env:` key in the way: the file's own keys.
    p.file("web.yml", &USES.replace("      - PW=${PW}\n", ""));
    let c = p.load(&web("    env_file: .env\n")).unwrap();
    assert_eq!(env(&c, "B"), Ok("file-a-b".into()));
    assert_eq!(env(&c, "C"), Ok("file-a".into()));
}

/// A wrong `env_file:` path or file is one error at its place: never the content of a file,
/// no second error about the same entry, no compose-lint warnings about the keys it would
/// have set.
#[test]
fn a_wrong_path_or_file_is_one_error_and_no_content() {
    let p = project();
    p.file("s.env", "PW=CANARY-pw\nA=1\n");
    p.file("bad.env", "PW=hunter2$CANARYtail\n");
    let cases: &[(&str, &str)] = &[
        ("    env_file: \"${file:s.env}\"\n", "teeform.yaml:5:15: env_file path cannot use `${file:s.env}`"),
        ("    env_file: [{path: \"${file:s.env}\"}]\n", "env_file path cannot use `${file:s.env}`"),
        ("    env_file: {path: \"${secret:file:s.env}\"}\n", "env_file path cannot use `${secret:file:s.env}`"),
        ("    env_file: \"\"\n", "teeform.yaml:5:15: env_file path is empty"),
        ("    env_file: {path: '', secret: true}\n", "env_file path is empty"),
        (
            "    env_file: {path: bad.env, secret: true}\n",
            "bad.env:1:11: a `$` in `PW`'s value starts an interpolation",
        ),
        ("    env_file: [s.env, missing.env]\n", "cannot read env file `missing.env`: no such file"),
    ];
    for (fields, want) in cases {
        let errs = p.errors(&web(fields));
        assert_eq!(errs.len(), 1, "{fields}: {errs:#?}");
        assert!(errs[0].contains(want), "{fields}: want {want:?} in {errs:#?}");
        assert!(!errs[0].contains("CANARY") && !errs[0].contains("hunter2"), "{errs:#?}");
    }
    // The same kind for the other paths a manifest names.
    let errs = p.errors("cvms:\n  web:\n    name: web-app\n    compose: \"${file:s.env}\"\n");
    assert!(errs.len() == 1 && errs[0].contains("cannot use `${file:s.env}`"), "{errs:#?}");
    let errs = p.errors("cvms:\n  web:\n    name: web-app\n    compose: ''\n");
    assert!(errs.len() == 1 && errs[0].contains("compose file is empty"), "{errs:#?}");
}
