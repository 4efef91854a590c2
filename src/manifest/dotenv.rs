//! Env files (`env_file:` on a CVM) in docker compose's dialect: what `docker compose` reads
//! for a service's `env_file:` (compose-go's `dotenv` parser and its `template` interpolation),
//! so a `.env` written for compose means the same to teeform.
//!
//! The dialect: `KEY=VALUE` lines (also `KEY: VALUE`), an optional `export ` in front, `#`
//! comment lines, blank lines; an unquoted value runs to the end of its line, cut at the
//! first ` #` (a `#` after a space starts a comment) and trimmed at its end; a single-quoted
//! value is literal (only `\'` is unescaped) and a double-quoted one takes the escapes `\n`,
//! `\r`, `\t`, `\a`, `\b`, `\f`, `\v`, `\\`, `\"`, `\$` and `\0NNN` (octal); both kinds may span
//! lines, and keep a CRLF inside them as written (compose-go never rewrites line breaks; a
//! `\r` elsewhere is a blank). Unquoted and double-quoted values are interpolated as compose does: `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`,
//! `${VAR:?error}`, `${VAR?error}` and `$$` for a `$`. A later key wins over an earlier one.
//!
//! Where teeform differs, it refuses rather than reads differently. docker compose looks
//! `${VAR}` up in its own environment first, then the service's `environment:`, then the keys
//! read so far; teeform looks only at the keys above it in the same file, so a plan never
//! depends on the machine it runs on, and a `${VAR}` set nowhere above is an error (compose
//! would use an empty string, with a warning). [`Entry::uses`] names what each value read, so
//! the loader can refuse a name the CVM's `env:` sets too. A bare `KEY` line (compose: "take KEY from my
//! environment") is an error too, and so is text after a closing quote on its line (compose
//! reads it as the next line). Every file teeform reads therefore gives what compose gives
//! with an empty environment.
//!
//! Pure: text in, entries and errors (with byte offsets) out. Never panics, on any input.

use std::collections::HashMap;

/// One `KEY=VALUE` of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// Byte offset of the key in the file.
    pub at: usize,
    /// The names its value's interpolation looked up (`${NAME}`, `$NAME`, in defaults too).
    pub uses: Vec<String>,
}

/// A problem of an env file, at a byte offset. The message and hint never quote a value; read
/// with [`parse_secret`], they hold no byte of the file but its well-formed key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub at: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// What a file holds: its entries in order (a key may repeat: the last one wins) and its
/// errors. An unterminated quote ends the reading (the rest of the file is inside it).
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub errors: Vec<Error>,
}

impl Parsed {
    /// The value of each key, the last one written winning.
    pub fn values(&self) -> HashMap<&str, &str> {
        self.entries.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect()
    }
}

/// How deep `${A:-${B:-…}}` may nest: far beyond any real file, and a bound on the work an
/// adversarial one can cause.
const MAX_NESTING: usize = 32;

/// Reads an env file's text (a byte-order mark already dropped, as `files` does). Its errors
/// may name what a value interpolates (`${NAME}`) or a line that is not `KEY=VALUE`.
pub fn parse(text: &str) -> Parsed {
    read(text, false)
}

/// [`parse`] for a file of secrets: the same entries, and errors that name only the keys of
/// `KEY=VALUE` lines (when they are environment-variable names), places and what to do;
/// never a byte of a value, nor of a line that is not `KEY=VALUE` (it may be a stray piece of
/// one).
pub fn parse_secret(text: &str) -> Parsed {
    read(text, true)
}

fn read(text: &str, secret: bool) -> Parsed {
    let mut p = Parser { s: text, pos: 0, out: Parsed::default(), vars: Vars::default(), secret };
    p.run();
    p.out
}

/// `value` written as a double-quoted env-file value that reads back as exactly `value`
/// (in docker compose and in [`parse`]): `\`, `"` and `$` escaped, line breaks and tabs as
/// `\n`, `\r`, `\t`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// compose-go's `isSpace`: blanks that are not a line break.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}')
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    out: Parsed,
    /// The keys read so far, for interpolation.
    vars: Vars,
    /// Whether the file holds secrets: then messages quote nothing of it but key names.
    secret: bool,
}

/// The keys read so far, and the names one value's interpolation looked up.
#[derive(Default)]
struct Vars {
    map: HashMap<String, String>,
    used: std::cell::RefCell<Vec<String>>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&String> {
        self.used.borrow_mut().push(name.to_string());
        self.map.get(name)
    }
}

impl Parser<'_> {
    fn err(&mut self, at: usize, message: impl Into<String>, hint: Option<&str>) {
        self.out.errors.push(Error { at, message: message.into(), hint: hint.map(str::to_string) });
    }

    /// `key` as a message names it: as written, but in a secret file only when it is an
    /// environment-variable name (anything else may be part of a value).
    fn key_name(&self, key: &str) -> String {
        if !self.secret || is_name(key) { format!("`{key}`") } else { "the key".into() }
    }

    /// Moves past the current line (after an error in it).
    fn skip_line(&mut self) {
        self.pos = self.s[self.pos..].find('\n').map_or(self.s.len(), |i| self.pos + i + 1);
    }

    fn run(&mut self) {
        while self.statement_start() {
            if !self.statement() {
                return;
            }
        }
    }

    /// Skips whitespace and comment lines; false at the end of the file.
    fn statement_start(&mut self) -> bool {
        loop {
            let rest = &self.s[self.pos..];
            let Some(i) = rest.find(|c: char| !c.is_whitespace()) else {
                self.pos = self.s.len();
                return false;
            };
            self.pos += i;
            if !self.s[self.pos..].starts_with('#') {
                return true;
            }
            self.skip_line();
        }
    }

    /// One statement from `self.pos`; false when the rest of the file cannot be read.
    fn statement(&mut self) -> bool {
        let s = self.s;
        // `export ` (any ASCII whitespace after it, as compose's `^export\s+`).
        if let Some(after) = s[self.pos..].strip_prefix("export")
            && after.starts_with([' ', '\t', '\n', '\u{c}', '\r'])
        {
            self.pos += "export".len();
            self.pos += s[self.pos..].find(|c: char| !is_blank(c)).unwrap_or(s.len() - self.pos);
        }
        let key_at = self.pos;
        let mut end = None;
        for (i, c) in s[key_at..].char_indices() {
            match c {
                '=' | ':' | '\n' => {
                    end = Some((key_at + i, c));
                    break;
                }
                c if is_blank(c) || matches!(c, '_' | '.' | '-' | '[' | ']') || c.is_alphanumeric() => {}
                c => {
                    let message = if self.secret {
                        "unexpected character in a key".to_string()
                    } else {
                        format!("unexpected character {c:?} in a key")
                    };
                    self.err(key_at + i, message, Some("a line is KEY=VALUE; a key is letters, digits and `_`"));
                    self.skip_line();
                    return true;
                }
            }
        }
        let (key_end, sep) = end.unwrap_or((s.len(), '\n'));
        let key = s[key_at..key_end].trim_end();
        if sep == '\n' {
            // `KEY` alone: docker compose takes KEY from its own environment.
            if !key.is_empty() {
                // In a secret file the line may be a stray piece of a value: not quoted.
                let message =
                    if self.secret { "a line with no `=`".to_string() } else { format!("`{key}` has no value") };
                self.err(
                    key_at,
                    message,
                    Some(
                        "write `KEY=` for an empty value; to pass a variable of teeform's environment, set it under the CVM's `env:` (`KEY: ${env:KEY}`, or `${secret:env:KEY}` for a secret)",
                    ),
                );
            }
            self.pos = (key_end + 1).min(s.len());
            return true;
        }
        if key.is_empty() {
            self.err(key_at, format!("`{sep}` with no key before it"), Some("a line is KEY=VALUE"));
            self.skip_line();
            return true;
        }
        if key.contains(char::is_whitespace) {
            let message = if self.secret {
                "a key contains a space".to_string()
            } else {
                format!("the key `{key}` contains a space")
            };
            self.err(key_at, message, Some("a line is KEY=VALUE"));
            self.skip_line();
            return true;
        }
        let key = key.to_string();
        self.pos = key_end + 1;
        self.pos += s[self.pos..].find(|c: char| !is_blank(c)).unwrap_or(s.len() - self.pos);
        self.value(key, key_at)
    }

    /// The value of `key` from `self.pos` (after the `=` and blanks), kept or reported; false
    /// when the rest of the file cannot be read (an unterminated quote).
    fn value(&mut self, key: String, key_at: usize) -> bool {
        let s = self.s;
        let value_at = self.pos;
        let value = match s[value_at..].chars().next() {
            Some(q @ ('"' | '\'')) => match self.quoted(q) {
                Some(raw) => {
                    self.after_quote(&key);
                    if q == '"' {
                        interpolate(&expand_escapes(&raw), &self.vars).map_err(|e| (value_at, e))
                    } else {
                        Ok(raw)
                    }
                }
                None => {
                    self.err(
                        value_at,
                        format!("the value of {} has no closing {q}", self.key_name(&key)),
                        Some("close the quote; a quoted value may span lines, so the rest of the file was read as part of it"),
                    );
                    return false;
                }
            },
            _ => {
                let line_end = s[value_at..].find('\n').map_or(s.len(), |i| value_at + i);
                self.pos = (line_end + 1).min(s.len());
                let line = &s[value_at..line_end];
                let raw = line.find(" #").map_or(line, |i| &line[..i]).trim_end();
                interpolate(raw, &self.vars).map_err(|e| (value_at + e.offset, e))
            }
        };
        let mut uses = self.vars.used.take();
        uses.sort();
        uses.dedup();
        match value {
            Ok(v) => {
                self.vars.map.insert(key.clone(), v.clone());
                self.out.entries.push(Entry { key, value: v, at: key_at, uses });
            }
            Err((at, e)) => {
                let (message, hint) = self.interp_message(&key, e.problem);
                self.out.errors.push(Error { at, message, hint });
            }
        }
        true
    }

    /// After a closing quote: blanks, then the line's end or a `#` comment. docker compose
    /// reads text after the quote as the next line (`K="a"B=1` sets B too); teeform refuses
    /// it, and says which value it follows rather than quoting it.
    fn after_quote(&mut self, key: &str) {
        let rest = &self.s[self.pos..];
        let at = self.pos + rest.find(|c: char| !is_blank(c)).unwrap_or(rest.len());
        if matches!(self.s[at..].chars().next(), None | Some('\n' | '#')) {
            return;
        }
        self.err(
            at,
            format!("text after the closing quote of {}'s value", self.key_name(key)),
            Some("a quoted value ends at its closing quote: put the whole value inside the quotes, and the next KEY=VALUE on a line of its own"),
        );
        self.pos = at;
        self.skip_line();
    }

    /// What an interpolation problem in `key`'s value says, and what to do. In a secret file
    /// it names neither the name looked up nor a `${NAME:?message}`'s message: both are
    /// part of the value.
    fn interp_message(&self, key: &str, problem: Problem) -> (String, Option<String>) {
        let key = self.key_name(key);
        match problem {
            Problem::Unset(_) if self.secret => (
                format!("a `$` in {key}'s value starts an interpolation of a name not set above this line"),
                Some(UNSET_HINT.to_string()),
            ),
            Problem::Unset(name) => (
                format!("`{name}` is not set above this line"),
                Some(UNSET_HINT.replace("NAME", &name)),
            ),
            Problem::Invalid => (
                format!("invalid `${{…}}` in {key}'s value"),
                Some("write `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+alt}`, `${NAME+alt}`, `${NAME:?error}` or `${NAME?error}`; `$$` is a literal `$`".into()),
            ),
            Problem::TooDeep => (format!("`${{…}}` nested more than {MAX_NESTING} deep in {key}'s value"), None),
            Problem::Required { .. } if self.secret => (
                format!("a required variable (`${{NAME:?…}}`) in {key}'s value is not set above this line"),
                Some("set it above this line, or write `$$` for a literal `$`".into()),
            ),
            Problem::Required { name, reason } => (
                if reason.is_empty() {
                    format!("required variable `{name}` is missing a value")
                } else {
                    format!("required variable `{name}` is missing a value: {reason}")
                },
                Some(format!("set `{name}` above this line")),
            ),
        }
    }

    /// A quoted value from the quote at `self.pos`, as compose-go scans it: a backslash before
    /// the quote character keeps the quote and drops the backslash; other backslashes stay
    /// (double-quoted escapes are expanded afterwards). `None` when the quote is not closed.
    fn quoted(&mut self, q: char) -> Option<String> {
        let q = q as u8;
        let bytes = self.s.as_bytes();
        let mut out = Vec::new();
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate().skip(self.pos + 1) {
            if b != q {
                if !escaped && b == b'\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    out.push(b'\\');
                }
                out.push(b);
                continue;
            }
            if escaped {
                escaped = false;
                out.push(b);
                continue;
            }
            self.pos = i + 1;
            // Only ASCII backslashes were dropped, so the bytes are still UTF-8.
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        None
    }
}

/// The escapes of a double-quoted value, as compose-go expands them: `\a \b \f \n \r \t \v
/// \\ \"`, `\$` (a literal `$`: `$$` for the interpolation after), `\0NNN` with three octal
/// digits (at most `\0377`); any other backslash stays as written.
fn expand_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            i += 1;
            continue;
        }
        let (with, len): (Option<&str>, usize) = match b[i + 1] {
            b'a' => (Some("\u{7}"), 2),
            b'b' => (Some("\u{8}"), 2),
            b'f' => (Some("\u{c}"), 2),
            b'n' => (Some("\n"), 2),
            b'r' => (Some("\r"), 2),
            b't' => (Some("\t"), 2),
            b'v' => (Some("\u{b}"), 2),
            b'\\' => (Some("\\"), 2),
            b'"' => (Some("\""), 2),
            b'$' => (Some("$$"), 2),
            b'0' => {
                let digits = b[i + 2..].iter().take(3).take_while(|d| d.is_ascii_digit()).count();
                (None, 2 + digits)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[lit..i]);
        match with {
            Some(w) => out.push_str(w),
            None => {
                let digits = &s[i + 2..i + len];
                match u32::from_str_radix(digits, 8).ok().filter(|n| digits.len() == 3 && *n <= 0o377) {
                    Some(n) => out.push(char::from_u32(n).unwrap_or('\u{fffd}')),
                    None => out.push_str(&s[i..i + len]),
                }
            }
        }
        i += len;
        lit = i;
    }
    out.push_str(&s[lit..]);
    out
}

/// Why an interpolation failed, at a byte offset of the string interpolated.
#[derive(Debug)]
struct InterpError {
    offset: usize,
    problem: Problem,
}

/// What went wrong in an interpolation; [`Parser::interp_message`] words it.
#[derive(Debug)]
enum Problem {
    /// `$NAME` or `${NAME}` with NAME not set above.
    Unset(String),
    /// A `${` that is none of the forms.
    Invalid,
    /// Nesting beyond [`MAX_NESTING`].
    TooDeep,
    /// `${NAME:?reason}` or `${NAME?reason}` with NAME missing.
    Required { name: String, reason: String },
}

const UNSET_HINT: &str = "in an env file teeform reads `${NAME}` from the keys above it in the same file only (docker compose would also look in its own environment, and use an empty string); write `$$` for a literal `$`, or single-quote the value to take it as written";

fn unset(offset: usize, name: &str) -> InterpError {
    InterpError { offset, problem: Problem::Unset(name.to_string()) }
}

/// Whether `s` is an environment-variable name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_name(s: &str) -> bool {
    !s.is_empty() && name_len(s) == s.len()
}

/// docker compose's interpolation of `s` against the keys read so far.
fn interpolate(s: &str, vars: &Vars) -> Result<String, InterpError> {
    subst(s, vars, 0)
}

fn name_len(s: &str) -> usize {
    match s.as_bytes().first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            s.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count()
        }
        _ => 0,
    }
}

fn subst(s: &str, vars: &Vars, depth: usize) -> Result<String, InterpError> {
    if depth > MAX_NESTING {
        return Err(InterpError { offset: 0, problem: Problem::TooDeep });
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(j) = s[i..].find('$') {
        let d = i + j;
        out.push_str(&s[i..d]);
        let rest = &s[d + 1..];
        if rest.starts_with('$') {
            out.push('$');
            i = d + 2;
        } else if let n @ 1.. = name_len(rest) {
            let name = &rest[..n];
            out.push_str(vars.get(name).ok_or_else(|| unset(d, name))?);
            i = d + 1 + n;
        } else if rest.starts_with('{') {
            let (value, end) = braced(s, d, vars, depth)?;
            out.push_str(&value);
            i = end;
        } else {
            out.push('$');
            i = d + 1;
        }
    }
    out.push_str(&s[i..]);
    Ok(out)
}

fn invalid(at: usize) -> InterpError {
    InterpError { offset: at, problem: Problem::Invalid }
}

/// The `${…}` at `d` in `s`: its value and where the text after it starts.
fn braced(s: &str, d: usize, vars: &Vars, depth: usize) -> Result<(String, usize), InterpError> {
    let start = d + 2;
    let n = name_len(&s[start..]);
    if n == 0 {
        return Err(invalid(d));
    }
    let name = &s[start..start + n];
    let k = start + n;
    let after = &s[k..];
    if after.starts_with('}') {
        let v = vars.get(name).ok_or_else(|| unset(d, name))?;
        return Ok((v.clone(), k + 1));
    }
    let op =
        [":-", ":+", ":?", "-", "+", "?"].into_iter().find(|op| after.starts_with(op)).ok_or_else(|| invalid(d))?;
    // compose's pattern takes the `${…}` to the last `}` of the line (`.` stops at a line
    // break), then cuts it at the brace that closes the first `{`, counted as compose-go
    // counts (the character after each `{` is skipped).
    let line_end = s[k..].find('\n').map_or(s.len(), |i| k + i);
    let last = s[k + op.len()..line_end].rfind('}').map(|i| k + op.len() + i).ok_or_else(|| invalid(d))?;
    let cut = closing_brace(&s[d..=last]).map_or(last, |i| d + i);
    let arg = &s[k + op.len()..cut];
    let value = vars.get(name);
    let nested = |a: &str| subst(a, vars, depth + 1).map_err(|e| InterpError { offset: d, ..e });
    let out = match op {
        ":-" => match value {
            Some(v) if !v.is_empty() => v.clone(),
            _ => nested(arg)?,
        },
        "-" => match value {
            Some(v) => v.clone(),
            None => nested(arg)?,
        },
        ":+" => match value {
            Some(v) if !v.is_empty() => nested(arg)?,
            _ => String::new(),
        },
        "+" => match value {
            Some(_) => nested(arg)?,
            None => String::new(),
        },
        _ => match value {
            Some(v) if op == "?" || !v.is_empty() => v.clone(),
            _ => {
                let reason = nested(arg)?;
                return Err(InterpError { offset: d, problem: Problem::Required { name: name.to_string(), reason } });
            }
        },
    };
    Ok((out, cut + 1))
}

/// compose-go's `getFirstBraceClosingIndex`: the `}` that brings the count of open braces back
/// to zero, where the character after each `{` is skipped.
fn closing_brace(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut open = 0i64;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if b[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests;
