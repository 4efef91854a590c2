//! Reading the API's answers (v2026-01-21 shapes): CVM details and list pages, status
//! batches, the provision and update answers; the path segment for an id.

use std::collections::BTreeMap;

use serde_json::Value;

use super::attrs;
use super::fields::{Fields, kind_of};
use crate::model::{BootFacts, CloudIds, CvmStatus, RemoteCvm};
use crate::providers::{ApiError, Available, CvmPage, HashRequired, KmsEntry, MAX_PAGES, NodeInfo, StatusReport};

/// The path segment for a CVM id, as the SDK rewrites identifiers: a UUID loses its dashes,
/// a bare 40-hex app id becomes `app_<hex>`, anything else is used as is.
pub fn path_id(id: &str) -> String {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let nodash = id.replace('-', "");
    if id.len() == 36 && nodash.len() == 32 && hex(&nodash) {
        nodash
    } else if id.len() == 40 && hex(id) {
        format!("app_{id}")
    } else {
        id.to_string()
    }
}

/// Reads a v2026-01-21 CVM detail (or list item). An answer of the wrong shape is an error
/// naming the field: a field that cannot be read is never taken as "not set", since that
/// would plan changes (or restarts) from a broken answer.
pub fn parse_cvm(v: &Value) -> Result<RemoteCvm, String> {
    let f = Fields::of(v, "")?;
    let id = f.id("id")?;
    let compose = match f.get("compose_file") {
        None => None,
        Some(c @ Value::Object(_)) => Some(c.clone()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(c @ Value::Object(_)) => Some(c),
            _ => return Err("`compose_file` is a string, but not an app-compose JSON object".into()),
        },
        Some(other) => return Err(f.wrong("compose_file", "an object", other)),
    };
    let cf = compose.as_ref().map(|c| Fields::of(c, "compose_file")).transpose()?;
    let attrs = attrs::read(&f, cf.as_ref())?;
    let kms = f.object("kms_info")?;
    let env_pubkey = match kms.as_ref().map(|k| k.str("encrypted_env_pubkey")).transpose()?.flatten() {
        Some(k) => Some(k),
        None => f.str("encrypted_env_pubkey")?,
    };
    let in_progress = f.get("progress").is_some() || f.bool("in_progress")?.unwrap_or(false);
    Ok(RemoteCvm {
        ids: CloudIds { id, app_id: f.str("app_id")?, vm_uuid: f.str("vm_uuid")?, instance_id: f.str("instance_id")? },
        status: f.str("status")?.map_or_else(CvmStatus::default, |s| CvmStatus::parse(&s)),
        in_progress,
        compose_hash: f.str("compose_hash")?,
        // In the API's normal form, as the planner compares attributes.
        attrs: attrs.normalized(),
        app_compose: compose,
        os_image_hash: f.object("os")?.map(|o| o.str("os_image_hash")).transpose()?.flatten(),
        env_pubkey,
        kms_info: f.get("kms_info").cloned(),
        boot: boot_facts(&f)?,
    })
}

/// Whether `cvm` is the CVM `asked` names (its id, UUID, app id, instance id or name), as the
/// API resolves identifiers: a detail answer for another CVM must never be taken for this one.
pub fn is_same_cvm(cvm: &RemoteCvm, asked: &str) -> bool {
    let norm = |x: &str| {
        let x = x.trim().to_ascii_lowercase().replace('-', "");
        x.strip_prefix("app_").or_else(|| x.strip_prefix("0x")).map(str::to_string).unwrap_or(x)
    };
    let want = norm(asked);
    let ids = &cvm.ids;
    [Some(&ids.id), ids.app_id.as_ref(), ids.vm_uuid.as_ref(), ids.instance_id.as_ref()]
        .into_iter()
        .flatten()
        .any(|x| norm(x) == want)
        || cvm.attrs.name == asked.trim()
}

/// The paging fields of a `{items, total, page, page_size, pages}` answer: `(total, pages)`,
/// each a whole number when present.
pub(super) fn page_counts(v: &Value) -> Result<(Option<u64>, Option<u64>), String> {
    let f = Fields::of(v, "")?;
    let count = |k: &str| match f.get(k) {
        None => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| f.wrong(k, "a whole number", x)),
    };
    Ok((count("total")?, count("pages")?))
}

/// Decides, after a page, whether a paginated listing goes on. It ends at an empty page, at
/// the last page the answer names, or once `total` items were listed (whichever comes first:
/// a claim of 10^9 pages is bounded by the total seen); past [`MAX_PAGES`] it is an error.
pub(super) struct Pager {
    pub(super) page: u64,
    listed: u64,
}

impl Pager {
    pub(super) fn new() -> Pager {
        Pager { page: 1, listed: 0 }
    }

    /// Counts one page of `n` items; `Ok(true)` when another page should be read.
    pub(super) fn next(&mut self, n: usize, total: Option<u64>, pages: Option<u64>) -> Result<bool, String> {
        self.listed += n as u64;
        let done = n == 0 || self.page >= pages.unwrap_or(1) || total.is_some_and(|t| self.listed >= t);
        if done {
            return Ok(false);
        }
        if self.page >= MAX_PAGES {
            return Err(format!(
                "the listing claims more than {MAX_PAGES} pages ({} items so far); teeform stops here",
                self.listed
            ));
        }
        self.page += 1;
        Ok(true)
    }
}

/// Reads a page of `GET /cvms/paginated` (`{items, total, page, page_size, pages}`): every
/// item as [`parse_cvm`] reads a CVM (`items[i]` in errors), or an error.
pub(super) fn parse_cvm_page(v: &Value) -> Result<CvmPage, String> {
    let f = Fields::of(v, "")?;
    let items = match f.get("items") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("`items` should be a list, got {}", kind_of(other))),
        None => return Err("`items` is missing".into()),
    };
    let items = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_cvm(item).map_err(|m| format!("`items[{i}]`: {m}")))
        .collect::<Result<_, _>>()?;
    let (total, pages) = page_counts(v)?;
    Ok(CvmPage { items, total, pages })
}

/// Reads a `POST /status/batch` answer (`{vm_uuid: {vm_uuid, status, in_progress,
/// boot_error?, …}}`) for the uuids `asked`, keyed as asked. Entries for uuids not asked
/// about are ignored; every entry asked about is read whole (a wrong type is an error). The
/// API may write a uuid with or without dashes, in either case (UNVERIFIED): keys match
/// either way.
pub(super) fn parse_statuses(v: &Value, asked: &[String]) -> Result<BTreeMap<String, StatusReport>, String> {
    let f = Fields::of(v, "")?;
    let norm = |u: &str| u.trim().replace('-', "").to_ascii_lowercase();
    let by_norm: BTreeMap<String, &String> = asked.iter().map(|u| (norm(u), u)).collect();
    let mut out = BTreeMap::new();
    for key in f.v.keys() {
        let Some(uuid) = by_norm.get(&norm(key)) else { continue };
        let Some(e) = f.object(key)? else { continue };
        let status = e.str("status")?.ok_or_else(|| format!("{} is missing", e.name("status")))?;
        let report = StatusReport {
            status: CvmStatus::parse(&status),
            in_progress: e.bool("in_progress")?.unwrap_or(false),
            boot_error: e.str("boot_error")?.filter(|x| !x.trim().is_empty()),
        };
        out.insert((*uuid).clone(), report);
    }
    Ok(out)
}

/// When the operation in progress began (`progress.started_at` of a v2026 CVM). The boot
/// error is not in a CVM's detail: [`PhalaApi::boot_errors`] reads it for those that need it.
pub(super) fn boot_facts(f: &Fields) -> Result<BootFacts, String> {
    let busy_since = f.object("progress")?.map(|p| p.str("started_at")).transpose()?.flatten();
    Ok(BootFacts { busy_since, ..Default::default() })
}

/// The objects of list `k`, each read as [`Fields`] (`k[i]` in errors).
pub(super) fn objects<'a>(f: &Fields<'a>, k: &str) -> Result<Vec<Fields<'a>>, String> {
    match f.get(k) {
        None => Ok(vec![]),
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, x)| Fields::of(x, &format!("{k}[{i}]"))).collect()
        }
        Some(other) => Err(f.wrong(k, "a list", other)),
    }
}

/// Nodes and KMS instances of `GET /teepods/available`.
pub(super) fn parse_available(v: &Value) -> Result<Available, String> {
    let f = Fields::of(v, "")?;
    let nodes = objects(&f, "nodes")?
        .iter()
        .map(|n| {
            let id = n
                .get("teepod_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{} is missing or not a whole number", n.name("teepod_id")))?;
            Ok(NodeInfo { id, name: n.req_str("name")? })
        })
        .collect::<Result<_, String>>()?;
    let kms = objects(&f, "kms_list")?
        .iter()
        .map(|k| {
            let chain_id = match k.get("chain_id") {
                None => None,
                Some(c) => Some(c.as_u64().ok_or_else(|| k.wrong("chain_id", "a whole number", c))?),
            };
            Ok(KmsEntry { id: k.id("id")?, slug: k.str("slug")?, chain_id })
        })
        .collect::<Result<_, String>>()?;
    Ok(Available { nodes, kms })
}

pub(super) fn hash_required(e: &ApiError) -> HashRequired {
    let ds = |k: &str| e.detail(k).and_then(|v| v.as_str()).map(str::to_string);
    HashRequired {
        compose_hash: ds("compose_hash").unwrap_or_default(),
        app_id: ds("app_id"),
        device_id: ds("device_id"),
        kms_info: e.detail("kms_info").cloned(),
        commit_token: ds("commit_token"),
        commit_url: ds("commit_url"),
        onchain_status: e.detail("onchain_status").cloned(),
    }
}

/// Whether a provision refused on `POST /cvms` means the API has no same-path create, so the
/// legacy `POST /cvms/provision` is the way: no such route (404, 405), or the body read as a
/// commit (a 422 for its missing `app_id` or `compose_hash`), as an API from before the
/// same-path create answers.
pub(super) fn legacy_only(e: &ApiError) -> bool {
    match e.status {
        Some(404 | 405) => e.code.is_none(),
        Some(422) => e.invalid_fields.iter().any(|f| f == "app_id" || f == "compose_hash"),
        _ => false,
    }
}

/// Whether an update's answer says it changed nothing (`status: no_change`): the CVM already
/// had the configuration, and nothing restarts.
pub(super) fn no_change(v: &Value) -> bool {
    v.get("status").and_then(Value::as_str) == Some("no_change")
}

/// A list field that must be there.
pub(super) fn list<'a>(f: &Fields<'a>, k: &str) -> Result<&'a Vec<Value>, String> {
    match f.get(k) {
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(f.wrong(k, "a list", other)),
        None => Err(format!("{} is missing", f.name(k))),
    }
}

/// The `correlation_id` of an accepted update (a string when present).
pub(super) fn correlation_id(v: &Value, method: &str, path: &str) -> Result<String, ApiError> {
    let read = || -> Result<String, String> {
        if v.is_null() {
            return Ok(String::new());
        }
        Ok(Fields::of(v, "")?.str("correlation_id")?.unwrap_or_default())
    };
    read().map_err(|m| ApiError::invalid(method, path, 200, m))
}
