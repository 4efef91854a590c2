//! CI: the markdown plan for pull requests.

use crate::harness::{TestEnv, WEB};

#[test]
fn markdown_plan_has_the_summary_a_section_per_cvm_and_no_secret() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "hunter2-secret".into());
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    t.write("web.yml", &format!("{WEB}    environment:\n      - PASSWORD=${{PASSWORD}}\n      - \"X=```\"\n"));
    t.manifest(
        "cvms:\n  web:\n    name: web-one\n    compose: web.yml\n    vcpu: 2\n    env:\n      PASSWORD: ${secret:env:DB_PASSWORD}\n  db:\n    name: db-one\n    compose: web.yml\n",
    );
    t.run(&["plan", "--out", "p.bin"]).ok();
    for r in [t.run(&["show", "p.bin", "--markdown"]), t.run(&["plan", "--markdown"])] {
        r.ok();
        let md = &r.stdout;
        assert!(
            md.starts_with("### teeform plan\n\n**Plan:** 1 to add, 1 to change, 0 to destroy. 1 CVM restart.\n"),
            "{md}"
        );
        assert!(md.contains("<details><summary>cvm.db will be created</summary>"), "{md}");
        assert!(md.contains("<details><summary>cvm.web will be updated in-place (restarts the CVM)</summary>"), "{md}");
        assert_eq!(md.matches("<details>").count(), 2, "{md}");
        assert_eq!(md.matches("</details>").count(), 2, "{md}");
        // The compose file holds three backticks: its fence is longer, so the block holds.
        assert!(md.contains("````diff\n"), "{md}");
        assert!(md.contains("\n+           PASSWORD = (sensitive value)\n"), "{md}");
        assert!(md.contains("\n!       vcpu = 1 -> 2\n"), "{md}");
        assert!(!md.contains("hunter2"), "{md}");
        assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
        assert!(!md.contains("Saved the plan"), "{md}");
    }
    // After apply: no changes, said in one line.
    t.run(&["apply", "--auto-approve"]).ok();
    let r = t.run(&["plan", "--markdown"]);
    r.ok();
    assert!(
        r.stdout.starts_with("### teeform plan\n\n**No changes.** Your infrastructure matches the configuration.\n\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("<details>"), "{}", r.stdout);
    // The state has no markdown form.
    assert!(t.run(&["show", "--markdown"]).code(1).stderr.contains("<PLAN_FILE>"));
}

#[test]
fn a_markdown_plan_too_long_for_a_comment_is_cut_under_githubs_limit() {
    let t = TestEnv::new();
    // 30 CVMs, each with a 4 KB compose file: about 120 KB of plan.
    let mut m = String::from("cvms:\n");
    for i in 0..30 {
        let big: String = (0..100).map(|j| format!("      L{j:03}: \"{}\"\n", "x".repeat(24))).collect();
        t.write(&format!("c{i}.yml"), &format!("services:\n  s:\n    image: nginx\n    labels:\n{big}"));
        m.push_str(&format!("  cvm{i:02}:\n    name: cvm-{i:02}\n    compose: c{i}.yml\n"));
    }
    t.manifest(&m);
    let full = t.run(&["plan"]);
    full.ok();
    assert!(full.stdout.len() > 100_000, "the plan is long: {}", full.stdout.len());
    let r = t.run(&["plan", "--markdown"]);
    r.ok();
    let md = &r.stdout;
    let n = md.chars().count();
    assert!(n <= 65_536, "{n} characters");
    assert!(n > 50_000, "as much as fits is shown: {n}");
    assert!(md.contains("**The plan is too long for a comment.**"), "{}", &md[md.len() - 800..]);
    // Every CVM is either shown or counted as left out.
    let left_out: usize = md
        .split("comment.** ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of what is left out: {}", &md[md.len() - 800..]));
    assert_eq!(md.matches("<details>").count() + left_out, 30);
    assert!(md.contains(&format!("(cvm.cvm{:02} will be created, ", 30 - left_out)), "{}", &md[md.len() - 800..]);
    assert!(md.trim_end().ends_with("The full plan is in the saved plan file: `teeform show PLAN_FILE`."));
    // Every section that is shown is whole markdown: as many closings as openings.
    assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
}
