//! Reading an answer's fields by type, each error naming the field.

use serde_json::Value;

/// Reads an answer's fields, failing on a field of the wrong type (a wrong type is never read
/// as "absent"). `null` counts as absent. Errors name the field (`resource.vcpu: …`).
pub(super) struct Fields<'a> {
    pub(super) v: &'a serde_json::Map<String, Value>,
    pub(super) at: String,
}

impl<'a> Fields<'a> {
    pub(super) fn of(v: &'a Value, at: &str) -> Result<Fields<'a>, String> {
        match v {
            Value::Object(m) => Ok(Fields { v: m, at: at.to_string() }),
            other => Err(format!("{}expected an object, got {}", prefix(at), kind_of(other))),
        }
    }

    pub(super) fn name(&self, k: &str) -> String {
        if self.at.is_empty() { format!("`{k}`") } else { format!("`{}.{k}`", self.at) }
    }

    pub(super) fn get(&self, k: &str) -> Option<&'a Value> {
        self.v.get(k).filter(|x| !x.is_null())
    }

    pub(super) fn wrong(&self, k: &str, want: &str, got: &Value) -> String {
        format!("{} should be {want}, got {}", self.name(k), shown(got))
    }

    pub(super) fn str(&self, k: &str) -> Result<Option<String>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(x)) => Ok(Some(x.clone())),
            Some(other) => Err(self.wrong(k, "a string", other)),
        }
    }

    pub(super) fn req_str(&self, k: &str) -> Result<String, String> {
        self.str(k)?.filter(|x| !x.is_empty()).ok_or_else(|| format!("{} is missing", self.name(k)))
    }

    pub(super) fn bool(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(k, "true or false", other)),
        }
    }

    /// A whole number that fits in `u32` (`2.0` is accepted; `2.5`, `-1` and `1e300` are not).
    pub(super) fn u32(&self, k: &str) -> Result<Option<u32>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(x) => whole_u32(x).map(Some).ok_or_else(|| self.wrong(k, "a whole number from 0 to 4294967295", x)),
        }
    }

    /// A number of GiB turned into MiB, fitting in `u32`.
    pub(super) fn gib_as_mib(&self, k: &str) -> Result<Option<u32>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_f64()
                .map(|gb| gb * 1024.0)
                .filter(|mb| mb.is_finite() && *mb >= 0.0 && *mb <= u32::MAX as f64)
                .map(|mb| Some(mb.round() as u32))
                .ok_or_else(|| self.wrong(k, "a number of GiB", x)),
        }
    }

    /// An id: a non-empty string or a whole number (the API's integer ids), as a string.
    pub(super) fn id(&self, k: &str) -> Result<String, String> {
        match self.get(k) {
            Some(Value::String(x)) if !x.trim().is_empty() => Ok(x.clone()),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
            None => Err(format!("{} is missing", self.name(k))),
            Some(other) => Err(self.wrong(k, "a string or a whole number", other)),
        }
    }

    pub(super) fn object(&self, k: &str) -> Result<Option<Fields<'a>>, String> {
        let at = if self.at.is_empty() { k.to_string() } else { format!("{}.{k}", self.at) };
        self.get(k).map(|x| Fields::of(x, &at)).transpose()
    }

    pub(super) fn strings(&self, k: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| self.wrong(k, "a list of strings", x)))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(k, "a list of strings", other)),
        }
    }
}

pub(super) fn prefix(at: &str) -> String {
    if at.is_empty() { String::new() } else { format!("`{at}`: ") }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as a message may quote it: short, and only its kind when it is large.
pub(super) fn shown(v: &Value) -> String {
    let t = v.to_string();
    if t.chars().count() <= 40 { t } else { kind_of(v).to_string() }
}

pub(super) fn whole_u32(v: &Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u32)
}
