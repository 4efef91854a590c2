use proptest::prelude::*;

use super::*;

/// `text` read whole: the last value of each key, in the order first written.
fn read(text: &str) -> Vec<(String, String)> {
    let p = parse(text);
    assert!(p.errors.is_empty(), "{text:?}: {:?}", p.errors);
    let mut out: Vec<(String, String)> = Vec::new();
    for e in p.entries {
        match out.iter_mut().find(|(k, _)| *k == e.key) {
            Some(kv) => kv.1 = e.value,
            None => out.push((e.key, e.value)),
        }
    }
    out
}

/// The one value `text` sets.
fn one(text: &str) -> String {
    let kv = read(text);
    assert_eq!(kv.len(), 1, "{text:?}: {kv:?}");
    kv[0].1.clone()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[test]
fn values_read_as_docker_compose_reads_them() {
    let cases: &[(&str, &str)] = &[
        // Unquoted: to the end of the line, trimmed at the end, ` #` starts a comment.
        ("FOO=bar", "bar"),
        ("FOO =bar", "bar"),
        ("FOO= bar", "bar"),
        ("FOO=bar  \t", "bar"),
        ("FOO=bar # comment", "bar"),
        ("FOO=bar #", "bar"),
        ("FOO=123#not-a-comment", "123#not-a-comment"),
        ("FOO=a\tb # tab before the hash", "a\tb"),
        ("FOO=a\t#b", "a\t#b"),
        ("FOO=foobar=", "foobar="),
        ("FOO=1:B", "1:B"),
        ("FOO=some\\tvalue", "some\\tvalue"),
        ("FOO=a 'b' \"c\"", "a 'b' \"c\""),
        ("FOO=   # only a comment, as compose reads it", "# only a comment, as compose reads it"),
        // Empty values.
        ("FOO=", ""),
        ("FOO=''", ""),
        ("FOO=\"\"", ""),
        ("FOO= \n", ""),
        // `KEY: VALUE`, `export`.
        ("FOO: 1", "1"),
        ("FOO: Foo=bar", "Foo=bar"),
        ("export FOO=2", "2"),
        ("export\tFOO=2", "2"),
        ("  export FOO=2", "2"),
        ("export FOO=\"export A\"", "export A"),
        ("exportFOO=2", "2"),
        // Single quotes: literal, `\'` unescaped.
        ("FOO='$OTHER'", "$OTHER"),
        ("FOO='${OTHER}'", "${OTHER}"),
        ("FOO='Let\\'s go!'", "Let's go!"),
        ("FOO='some\\tvalue'", "some\\tvalue"),
        ("FOO='a\\\\b'", "a\\\\b"),
        ("FOO='ba#r' # comment", "ba#r"),
        ("FOO='first\nsecond\n'", "first\nsecond\n"),
        // Double quotes: escapes, `#` inside, comments after.
        ("FOO=\"VAL # not a comment\"", "VAL # not a comment"),
        ("FOO=\"VAL\" # comment", "VAL"),
        ("FOO=\"bar#baz\"#", "bar#baz"),
        ("FOO=\"{\\\"hello\\\": \\\"json\\\"}\"", "{\"hello\": \"json\"}"),
        ("FOO=\"some\\tvalue\"", "some\tvalue"),
        ("FOO=\"Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z\"", "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ"),
        ("FOO=\"bar\\n\\ b\\az\"", "bar\n\\ b\u{7}z"),
        ("FOO=\"bar\\\\r\\ b\"", "bar\\r\\ b"),
        ("FOO=\"end\\\\\"", "end\\"),
        ("FOO=\"\\x07 \\u12e4 \\c\"", "\\x07 \\u12e4 \\c"),
        ("FOO=\"\\012 \\0400 \\0\"", "\\012 \\0400 \\0"),
        ("FOO=\"\\0101\\01012\"", "AA2"),
        ("FOO=\"'d'\"", "'d'"),
        // A double-quoted value may span lines, kept as written (CRLF too).
        ("KEY=\"-----BEGIN-----\nAAAA\n-----END-----\"", "-----BEGIN-----\nAAAA\n-----END-----"),
        ("KEY=\"a\r\nb\"\r\n", "a\r\nb"),
        // Line endings, blanks, a byte-order mark dropped before parsing.
        ("FOO=bar\r\n", "bar"),
        ("\n\n  \t FOO=bar\n\n", "bar"),
        ("# comment\n# FOO=no\nFOO=yes", "yes"),
        ("  # indented comment\nFOO=yes", "yes"),
        // Non-ASCII text as it is.
        ("FOO=héllo wörld ✓", "héllo wörld ✓"),
        ("FOO=\"日本\"", "日本"),
    ];
    for (text, want) in cases {
        assert_eq!(one(text), *want, "{text:?}");
    }
}

#[test]
fn interpolation_reads_keys_above_with_composes_operators() {
    let cases: &[(&str, &str)] = &[
        ("A=x\nB=$A", "x"),
        ("A=x\nB=${A}", "x"),
        ("A=x\nB=\"${A}-y\"", "x-y"),
        ("A=x\nB='${A}'", "${A}"),
        ("A=x\nB=$$A", "$A"),
        ("A=x\nB=\"\\$A\"", "$A"),
        ("A=x\nB=$", "$"),
        ("A=x\nB=$5 and $-", "$5 and $-"),
        ("A=x\nB=${A:-d}", "x"),
        ("A=\nB=${A:-d}", "d"),
        ("A=\nB=${A-d}", ""),
        ("A=x\nB=${NOPE-d}", "d"),
        ("A=x\nB=${NOPE:-d e f}", "d e f"),
        ("A=x\nB=${A:+alt}", "alt"),
        ("A=\nB=${A:+alt}", ""),
        ("A=\nB=${A+alt}", "alt"),
        ("A=x\nB=${NOPE+alt}", ""),
        ("A=x\nB=${A?err}", "x"),
        ("A=\nB=${A?err}", ""),
        ("A=x\nB=${NOPE:-${A}}", "x"),
        ("A=x\nB=${NOPE:-${ALSO:-deep}}", "deep"),
        ("A=x\nB=${NOPE:-a}${A}", "ax"),
        ("A=x\nB=${NOPE:-{x}}", "{x}"),
        ("A=x\nB=${A:-y} ${A}}", "x x}"),
        // A key may be read again, later values winning.
        ("PATH=/bin\nPATH=$PATH:/usr/bin", "/bin:/usr/bin"),
    ];
    for (text, want) in cases {
        let kv = read(text);
        assert_eq!(kv.last().unwrap().1, *want, "{text:?}");
    }
    assert_eq!(read("A=x\nA=${A}y\n"), [("A".to_string(), "xy".to_string())]);
}

#[test]
fn errors_say_where_and_never_quote_a_value() {
    // (text, line, column, part of the message)
    let cases: &[(&str, usize, usize, &str)] = &[
        ("A=1\nB=$NOPE\n", 2, 3, "`NOPE` is not set above this line"),
        ("A=1\nB=x ${NOPE}\n", 2, 5, "`NOPE` is not set"),
        ("B=\"a\nb ${NOPE}\"\n", 1, 3, "`NOPE` is not set"),
        ("B=$B\n", 1, 3, "`B` is not set"),
        ("A=x\nB=$A_more\n", 2, 3, "`A_more` is not set"),
        ("A=\nB=${A:?needs a value}\n", 2, 3, "required variable `A` is missing a value: needs a value"),
        ("B=${A?}\n", 1, 3, "required variable `A` is missing a value"),
        ("B=${A\n", 1, 3, "invalid `${…}`"),
        ("B=${1}\n", 1, 3, "invalid `${…}`"),
        ("B=${A:x}\n", 1, 3, "invalid `${…}`"),
        ("B=${A:-\n}\n", 1, 3, "invalid `${…}`"),
        ("SECRET=\"s3cr3t\nNEXT=1\n", 1, 8, "the value of `SECRET` has no closing \""),
        ("A=1\nLONELY\nB=2\n", 2, 1, "`LONELY` has no value"),
        ("A=1\nLONELY", 2, 1, "`LONELY` has no value"),
        ("A B=1\n", 1, 1, "contains a space"),
        ("=1\n", 1, 1, "no key"),
        ("A*B=1\n", 1, 2, "unexpected character '*'"),
        ("A=\"x\" junk\n", 1, 7, "text after the closing quote of `A`'s value"),
        ("A='x'B=1\n", 1, 6, "text after the closing quote of `A`'s value"),
    ];
    for (text, line, col, want) in cases {
        let p = parse(text);
        let e = p.errors.first().unwrap_or_else(|| panic!("{text:?}: no error"));
        assert!(e.message.contains(want), "{text:?}: {e:?}");
        assert_eq!(line_col(text, e.at), (*line, *col), "{text:?}: {e:?}");
        assert!(!e.message.contains("s3cr3t"), "{e:?}");
    }
    // Reading goes on after an error (but not past an unterminated quote).
    let p = parse("A=$X\nB=2\nC D=3\nE=4\n");
    assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
    assert_eq!(p.entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["B", "E"]);
    let p = parse("A='open\nB=2\n");
    assert!(p.entries.is_empty() && p.errors.len() == 1, "{p:?}");
    // `export` alone on a line sets nothing (compose looks up an empty name).
    assert_eq!(read("export\nA=1"), [("A".to_string(), "1".to_string())]);
}

#[test]
fn a_comment_or_blanks_may_follow_a_closing_quote() {
    assert_eq!(
        read("A=\"x\"  # c\nB='y'#c\nC=\"z\"\t\n"),
        [("A", "x"), ("B", "y"), ("C", "z")].map(|(k, v)| (k.into(), v.into()))
    );
}

/// Every error a secret file can have, each with a canary where a value's (or a stray
/// line's) bytes are: no message or hint holds any of it, and each names its line.
#[test]
fn a_secret_files_errors_quote_nothing_of_it() {
    let deep = format!("D={}CANARY{}", "${A:-".repeat(40), "}".repeat(40));
    let cases: &[&str] = &[
        "DBPASS=hunter2$CANARYTail99",
        "DBPASS=x${CANARY}",
        "DBPASS=\"x\nmore ${CANARY}\"",
        "P=\"abc\"CANARYxyz",
        "P='abc' CANARY=1",
        "Z=${NOPE:?CANARY4msg}",
        "Z=${CANARY?}",
        "Z=${CANARY:x}",
        "Z=${A:-${CANARY}}",
        "Z=${A:-$CANARY}",
        &deep,
        "CANARYlonely",
        "CANARY*x=1",
        "CAN ARY=1",
        "=CANARY",
        "P=\"CANARY unterminated",
    ];
    for case in cases {
        for text in [format!("{case}\n"), format!("OK=1\n{case}")] {
            let p = parse_secret(&text);
            assert!(!p.errors.is_empty(), "{text:?}: no error");
            for e in &p.errors {
                let shown = format!("{} {}", e.message, e.hint.as_deref().unwrap_or_default());
                assert!(!shown.contains("CANARY") && !shown.contains("CAN "), "{text:?}: {e:?}");
                assert!(!shown.contains("hunter2") && !shown.contains("abc"), "{text:?}: {e:?}");
                assert!(e.at <= text.len() && text.is_char_boundary(e.at), "{text:?}: {e:?}");
            }
            // The same file read in plain says the same number of things.
            assert_eq!(parse(&text).errors.len(), p.errors.len(), "{text:?}");
        }
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("B={}x{}\n", "${A:-".repeat(40), "}".repeat(40));
    let p = parse(&deep);
    assert!(p.errors[0].message.contains("nested more than"), "{:?}", p.errors);
    let ok = format!("B={}x{}\n", "${A:-".repeat(20), "}".repeat(20));
    assert_eq!(one(&ok), "x");
}

proptest! {
    /// A value written by [`quote`] reads back as exactly that value, whatever it holds.
    #[test]
    fn a_quoted_value_reads_back_equal(value in any::<String>(), key in "[A-Za-z_][A-Za-z0-9_]{0,12}") {
        let text = format!("# written by quote()\nexport {key}={} # comment\nNEXT=1\n", quote(&value));
        let p = parse(&text);
        prop_assert!(p.errors.is_empty(), "{:?}", p.errors);
        prop_assert_eq!(p.entries.len(), 2);
        prop_assert_eq!(&p.entries[0].key, &key);
        prop_assert_eq!(&p.entries[0].value, &value);
    }

    /// Any text reads without a panic, and every error is at a place in it.
    #[test]
    fn any_text_reads_without_panic(text in "(?s)[A-Za-z_=:'\"#$\\\\{}\\-+?\n\r\t 0-9é]{0,80}") {
        let p = parse(&text);
        for e in &p.errors {
            prop_assert!(e.at <= text.len() && text.is_char_boundary(e.at));
        }
        // Read as secret: the same entries, and the same problems at the same places.
        let q = parse_secret(&text);
        prop_assert_eq!(&q.entries, &p.entries);
        let at = |p: &Parsed| p.errors.iter().map(|e| e.at).collect::<Vec<_>>();
        prop_assert_eq!(at(&q), at(&p));
    }
}

/// CRLF as compose-go reads it: it never rewrites line breaks, so `\r` before a line's end
/// is a blank (dropped after a key, an unquoted value or a closing quote, and in comment and
/// blank lines), but a quoted value that spans lines keeps its `\r\n` (as written, in either
/// quote): converting such a file to CRLF changes that value, for docker compose and teeform
/// alike.
#[test]
fn crlf_is_a_line_end_except_inside_a_quoted_value() {
    let lf = "# c\nexport A=1 # c\nB='x'\nC=\"y\" # c\n\nD='p\nq'\nE=\"r\ns\"\n";
    let crlf = lf.replace('\n', "\r\n");
    let kv = |text: &str| read(text).into_iter().collect::<std::collections::BTreeMap<_, _>>();
    let (lf, crlf) = (kv(lf), kv(&crlf));
    for k in ["A", "B", "C"] {
        assert_eq!(lf[k], crlf[k], "{k}");
    }
    assert_eq!((lf["D"].as_str(), lf["E"].as_str()), ("p\nq", "r\ns"));
    assert_eq!((crlf["D"].as_str(), crlf["E"].as_str()), ("p\r\nq", "r\r\ns"));
}
