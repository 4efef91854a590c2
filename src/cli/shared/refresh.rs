//! Refreshing state from the API: what became of each CVM in state, in as few requests as the
//! fleet allows.
//!
//! The CVM list (`GET /cvms/paginated`, 100 CVMs a page, the pages after the first read
//! `--parallelism` at a time) carries everything a CVM's detail does but its app compose. So
//! a refresh reads the list, takes each CVM in state from its list item, and asks for the
//! detail (`GET /cvms/{id}`) only of the CVMs the list cannot settle:
//!
//! - whose compose hash differs from the one state recorded (the compose file, pre-launch
//!   script or env keys may have changed: the detail says which);
//! - that are not in the list (deleted outside teeform, or the list moved while it was read):
//!   the detail confirms it before the plan says the CVM is gone;
//! - that the plan updates in a way that changes the app compose ([`with_details`]: the
//!   preview of the new compose hash starts from the CVM's app compose).
//!
//! Beside them, the refresh finds the instances of state's apps that no record holds (made
//! outside teeform, e.g. `phala cvms replicate`): from the list when it read it whole and every
//! item names its app, else with one `GET /apps/{id}/cvms` per app. The plan shows them.
//!
//! When the list is much longer than the CVMs state lacks from its first page (a small
//! manifest in a large account), those CVMs are read one by one instead: a refresh never
//! costs more than one request per CVM and one per app, plus the first page. `TEEFORM_PER_CVM_READS=1`
//! reads every CVM by its detail, as teeform did before (for comparison, or should the API's
//! list misbehave).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::StreamExt;

use super::session::Session;
use crate::cli::context::{Api, Ctx};
use crate::cli::error::{CliError, CliResult};
use crate::model::{Address, EnvVal, RemoteCvm, ResourceRecord};
use crate::plan::{Action, Plan, Refresh};
use crate::providers::{self, ApiError};
use crate::state::Snapshot;

/// What a refresh learned.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// What became of each CVM in state.
    pub found: BTreeMap<Address, Refresh>,
    /// Every CVM at the endpoint, when the refresh read the whole list (the check that names
    /// to create are free reuses it).
    pub listing: Option<Vec<RemoteCvm>>,
    /// Instances of the apps of CVMs in state that no record holds (made outside teeform),
    /// from the list when it was read whole, else one `GET /apps/{id}/cvms` per app.
    pub unmanaged: Vec<RemoteCvm>,
}

/// Refreshes every CVM in `snapshot` (none: no request).
pub async fn refresh(ctx: &Ctx, s: &Session, snapshot: &Snapshot, parallelism: usize) -> CliResult<Refreshed> {
    let api = &s.api;
    let n = snapshot.resources.len();
    if n == 0 {
        return Ok(Refreshed::default());
    }
    ctx.shell.status("Refreshing", &format!("{n} CVM{} from {}", if n == 1 { "" } else { "s" }, api.endpoint));
    let parallelism = parallelism.max(1);
    let fail = |e: ApiError, what: String| refresh_error(ctx, s, e, what);
    let records: Vec<&ResourceRecord> = snapshot.resources.values().collect();
    let mut out = Refreshed::default();
    // Each record's list item, if the list was read and has it.
    let mut items: Vec<Option<RemoteCvm>> = vec![None; records.len()];
    if !ctx.settings.per_cvm_reads {
        let first = api.client.cvm_page(1).await.map_err(|e| fail(e, "cannot list the CVMs".into()))?;
        let unmatched = ListIndex::new(&first.items).unmatched(&records);
        let per_page = first.items.len();
        let more_pages = match first.last_page(per_page) {
            _ if per_page == 0 => 0,
            Some(last) => last.saturating_sub(1),
            // The API gives no counts: the list is read to its end.
            None => 1,
        };
        // Reading the rest of a long list can cost more than reading the CVMs it would find
        // and listing the instances of their apps.
        let read_all = more_pages <= (unmatched + apps_of(&records, &out.found).len()) as u64;
        let listing = if read_all {
            providers::list_rest(api.client.as_ref(), first, parallelism)
                .await
                .map_err(|e| fail(e, "cannot list the CVMs".into()))?
        } else {
            first.items
        };
        let index = ListIndex::new(&listing);
        for (slot, rec) in items.iter_mut().zip(&records) {
            *slot = index.find(rec).cloned();
        }
        if read_all {
            out.listing = Some(listing);
        }
    }
    // From the list where it settles the CVM; the detail of the others.
    let mut details = Vec::new();
    for (rec, item) in records.iter().zip(items) {
        match item.and_then(|item| from_list(rec, item)) {
            Some(remote) => {
                out.found.insert(rec.address.clone(), Refresh::Found(Box::new(remote)));
            }
            None => details.push(*rec),
        }
    }
    for (addr, r) in read_details(api, details.iter().map(|r| (&r.address, r.ids.id.as_str())), parallelism).await {
        let found = r.map_err(|e| fail(e, format!("cannot refresh {addr}")))?;
        out.found.insert(addr, found);
    }
    let stuck_after = super::execute::wait_options(ctx).timeout;
    for r in out.found.values_mut() {
        if let Refresh::Found(remote) = r {
            remote.boot.stuck = remote.in_progress
                && remote.boot.busy_since.as_deref().and_then(busy_for).is_some_and(|d| d > stuck_after);
        }
    }
    boot_errors(ctx, api, &mut out.found).await;
    out.unmanaged = unmanaged(ctx, api, &records, &out, parallelism).await;
    Ok(out)
}

/// The app ids (bare, lower case) of `records` and of what refresh found of them.
fn apps_of(records: &[&ResourceRecord], found: &BTreeMap<Address, Refresh>) -> BTreeSet<String> {
    let remote = found.values().filter_map(|r| match r {
        Refresh::Found(r) => r.ids.app_id.as_deref(),
        Refresh::Gone => None,
    });
    records.iter().filter_map(|r| r.ids.app_id.as_deref()).chain(remote).map(norm_id).collect()
}

/// The instances of the apps of `records` that no record holds: from the whole list when the
/// refresh read it and every item names its app; else one `GET /apps/{id}/cvms` per app,
/// `parallelism` at a time. An app whose instances cannot be read costs a warning, not the plan.
async fn unmanaged(
    ctx: &Ctx,
    api: &Api,
    records: &[&ResourceRecord],
    out: &Refreshed,
    parallelism: usize,
) -> Vec<RemoteCvm> {
    let apps = apps_of(records, &out.found);
    let mut held: HashSet<String> = HashSet::new();
    let remotes = out.found.values().filter_map(|r| match r {
        Refresh::Found(r) => Some(&r.ids),
        Refresh::Gone => None,
    });
    for ids in records.iter().map(|r| &r.ids).chain(remotes) {
        held.extend(ids.vm_uuid.iter().chain([&ids.id]).map(|x| norm_id(x)));
    }
    let ours = |c: &RemoteCvm| {
        c.ids.app_id.as_deref().is_some_and(|a| apps.contains(&norm_id(a)))
            && !c.ids.vm_uuid.iter().chain([&c.ids.id]).any(|x| held.contains(&norm_id(x)))
    };
    if let Some(listing) = out.listing.as_deref().filter(|l| l.iter().all(|c| c.ids.app_id.is_some())) {
        return listing.iter().filter(|c| ours(c)).cloned().collect();
    }
    let client = &api.client;
    let lists: Vec<_> = futures::stream::iter(apps.iter().map(|a| async move { (a, client.app_instances(a).await) }))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut found = Vec::new();
    for (app, r) in lists {
        match r {
            Ok(instances) => {
                // The app is the one asked for, whether or not each item says so.
                let named = instances.into_iter().map(|mut c| {
                    c.ids.app_id.get_or_insert_with(|| app.clone());
                    c
                });
                found.extend(named.filter(|c| ours(c)));
            }
            Err(e) => ctx.shell.warn(&format!("cannot list the instances of app {app}: {e}")),
        }
    }
    found
}

/// Reads the detail of the CVMs the plan updates in a way that changes their app compose
/// and that were refreshed from the list, which has no app compose: the plan's preview of
/// the new compose hash starts from it. `Ok(false)` when there were none (the plan stands);
/// else `refreshed` holds the details and the caller plans again.
pub async fn with_details(
    ctx: &Ctx,
    s: &Session,
    p: &Plan,
    refreshed: &mut Refreshed,
    parallelism: usize,
) -> CliResult<bool> {
    let wanted: Vec<(&Address, String)> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Update && c.compose_hash.is_some())
        // Refresh keeps a moved CVM under its address in state, the one it moves from.
        .map(|c| c.moved_from.as_ref().unwrap_or(&c.address))
        .filter_map(|at| match refreshed.found.get(at) {
            Some(Refresh::Found(r)) if r.app_compose.is_none() => Some((at, r.ids.id.clone())),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(false);
    }
    let got = read_details(&s.api, wanted.iter().map(|(a, id)| (*a, id.as_str())), parallelism.max(1)).await;
    for (addr, r) in got {
        let mut found = r.map_err(|e| refresh_error(ctx, s, e, format!("cannot refresh {addr}")))?;
        // What the refresh learned beyond the detail (how long it has been busy, its boot
        // error) still holds.
        if let (Refresh::Found(new), Some(Refresh::Found(old))) = (&mut found, refreshed.found.get(&addr)) {
            new.boot = old.boot.clone();
        }
        refreshed.found.insert(addr, found);
    }
    Ok(true)
}

/// The details (`GET /cvms/{id}`) of `cvms`, `parallelism` at a time: found, or gone.
async fn read_details<'a>(
    api: &Api,
    cvms: impl Iterator<Item = (&'a Address, &'a str)>,
    parallelism: usize,
) -> Vec<(Address, Result<Refresh, ApiError>)> {
    let client = &api.client;
    futures::stream::iter(cvms.map(|(addr, id)| async move {
        let r = client.get_cvm(id).await.map(|found| match found {
            Some(remote) => Refresh::Found(Box::new(remote)),
            None => Refresh::Gone,
        });
        (addr.clone(), r)
    }))
    .buffer_unordered(parallelism)
    .collect()
    .await
}

/// The CVM as its list item shows it, with what the list leaves out (the app compose's
/// compose file, pre-launch script and env keys) taken from `rec` — when the compose hash is
/// the one `rec` recorded, since the hash covers all three. `None` when the detail is needed:
/// the hash differs, or either side does not know it, or state has no compose file.
/// UNVERIFIED: that the list's `compose_hash` is as current as the detail's.
fn from_list(rec: &ResourceRecord, mut item: RemoteCvm) -> Option<RemoteCvm> {
    let norm = |h: &str| h.trim().trim_start_matches("0x").to_ascii_lowercase();
    let same = matches!((&rec.compose_hash, &item.compose_hash), (Some(a), Some(b)) if norm(a) == norm(b));
    if !same || rec.attrs.compose.is_none() {
        return None;
    }
    let a = &mut item.attrs;
    a.compose = rec.attrs.compose.clone();
    a.pre_launch_script = rec.attrs.pre_launch_script.clone();
    a.env = rec.attrs.env.keys().map(|k| (k.clone(), EnvVal::default())).collect();
    // In the API's normal form, as `parse_cvm` gives every report.
    item.attrs = item.attrs.normalized();
    Some(item)
}

/// The CVMs of a list, looked up as state names them: by `vm_uuid`, else by the id state
/// uses in paths (compared as the API compares identifiers: case, dashes and an `app_` or
/// `0x` prefix aside). Never by name: a name says nothing about which CVM it is.
struct ListIndex<'a> {
    by_uuid: HashMap<String, &'a RemoteCvm>,
    by_id: HashMap<String, &'a RemoteCvm>,
}

fn norm_id(x: &str) -> String {
    let x = x.trim().to_ascii_lowercase().replace('-', "");
    x.strip_prefix("app_").or_else(|| x.strip_prefix("0x")).map(str::to_string).unwrap_or(x)
}

impl<'a> ListIndex<'a> {
    fn new(items: &'a [RemoteCvm]) -> ListIndex<'a> {
        let mut by_uuid = HashMap::new();
        let mut by_id = HashMap::new();
        for c in items {
            if let Some(u) = &c.ids.vm_uuid {
                by_uuid.insert(norm_id(u), c);
            }
            by_id.insert(norm_id(&c.ids.id), c);
        }
        ListIndex { by_uuid, by_id }
    }

    fn find(&self, rec: &ResourceRecord) -> Option<&'a RemoteCvm> {
        if let Some(u) = &rec.ids.vm_uuid {
            return self.by_uuid.get(&norm_id(u)).copied();
        }
        let id = norm_id(&rec.ids.id);
        self.by_id.get(&id).or_else(|| self.by_uuid.get(&id)).copied()
    }

    /// How many of `records` this list does not have.
    fn unmatched(&self, records: &[&ResourceRecord]) -> usize {
        records.iter().filter(|r| self.find(r).is_none()).count()
    }
}

/// A refresh that failed: nothing was planned. Planning from cached state helps only while
/// the API is out of reach; it cannot fix a key, a request or an answer that is wrong.
fn refresh_error(ctx: &Ctx, s: &Session, e: ApiError, what: String) -> CliError {
    let offer = s.command == "plan" && e.is_transient();
    let err = CliError::from(e).context(what);
    if offer {
        err.hint(format!("`{}` plans from cached state", ctx.command_line("plan --refresh=false")))
    } else {
        err.hint("nothing was changed")
    }
}

/// How long ago the API says an operation began (`progress.started_at`), by this machine's
/// clock. UNVERIFIED: the timestamp's exact format; RFC 3339 with or without an offset is read.
fn busy_for(since: &str) -> Option<std::time::Duration> {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as i64);
    let then = since
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
        .or_else(|| humantime::parse_rfc3339_weak(since).ok().and_then(ms))?;
    let now = ms(SystemTime::now())?;
    (now >= then).then(|| Duration::from_millis((now - then) as u64))
}

/// Reads the API's boot errors of the CVMs that failed or are stuck, in one request per 100
/// (none when every CVM is fine). A failure to read them costs the message, not the plan.
async fn boot_errors(ctx: &Ctx, api: &Api, refreshed: &mut BTreeMap<Address, Refresh>) {
    let unwell = |r: &RemoteCvm| r.status.is_failed() || r.boot.stuck;
    let uuid = |r: &RemoteCvm| r.ids.vm_uuid.clone().unwrap_or_else(|| r.ids.id.clone());
    let wanted: Vec<String> = refreshed
        .values()
        .filter_map(|r| match r {
            Refresh::Found(r) if unwell(r) => Some(uuid(r)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    match api.client.boot_errors(&wanted).await {
        Ok(errors) => {
            for r in refreshed.values_mut() {
                if let Refresh::Found(r) = r
                    && let Some(e) = errors.get(&uuid(r))
                {
                    r.boot.error = Some(e.clone());
                }
            }
        }
        Err(e) => ctx.shell.warn(&format!("cannot read the boot errors of CVMs that failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CloudIds, CvmAttrs, CvmStatus};

    fn rec(id: &str, uuid: Option<&str>, hash: Option<&str>) -> ResourceRecord {
        let mut attrs = CvmAttrs {
            name: "web-app".into(),
            compose: Some("services: {}\n".into()),
            pre_launch_script: Some("echo hi\n".into()),
            vcpu: Some(2),
            ..Default::default()
        };
        attrs.env.insert("A".into(), EnvVal::plain("1"));
        ResourceRecord {
            surge: false,
            address: Address::cvm("web"),
            ids: CloudIds { id: id.into(), vm_uuid: uuid.map(str::to_string), ..Default::default() },
            attrs,
            compose_hash: hash.map(str::to_string),
            env_pubkey: None,
            kms_info: None,
            status: Some(CvmStatus::Running),
            tainted: false,
            boot: Default::default(),
            dependencies: vec![],
            updated_at: String::new(),
            endpoint: None,
            prevent_destroy: false,
            secrets_scope: None,
            unverified: None,
        }
    }

    fn item(id: &str, uuid: Option<&str>, hash: Option<&str>) -> RemoteCvm {
        RemoteCvm {
            ids: CloudIds { id: id.into(), vm_uuid: uuid.map(str::to_string), ..Default::default() },
            status: CvmStatus::Running,
            in_progress: false,
            compose_hash: hash.map(str::to_string),
            attrs: CvmAttrs { name: "web-app".into(), vcpu: Some(4), ..Default::default() },
            app_compose: None,
            os_image_hash: None,
            env_pubkey: None,
            kms_info: None,
            boot: Default::default(),
        }
    }

    #[test]
    fn the_list_settles_a_cvm_only_when_its_compose_hash_is_the_recorded_one() {
        let r = rec("u1", Some("u1"), Some("AB12"));
        // Same hash (written differently): the app compose's attributes come from state, the
        // rest (here a changed vcpu, which the plan shows as drift) from the list.
        let got = from_list(&r, item("u1", Some("u1"), Some("0xab12"))).expect("settled by the list");
        assert_eq!(got.attrs.compose, r.attrs.compose);
        assert_eq!(got.attrs.pre_launch_script, r.attrs.pre_launch_script);
        assert_eq!(got.attrs.env.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(got.attrs.env["A"], EnvVal::default(), "values are never read back");
        assert_eq!(got.attrs.vcpu, Some(4));
        assert!(got.app_compose.is_none());
        // Any doubt asks for the detail.
        assert!(from_list(&r, item("u1", Some("u1"), Some("cd34"))).is_none(), "another hash");
        assert!(from_list(&r, item("u1", Some("u1"), None)).is_none(), "the list gives no hash");
        assert!(
            from_list(&rec("u1", Some("u1"), None), item("u1", Some("u1"), Some("ab12"))).is_none(),
            "state has none"
        );
        let mut no_compose = r.clone();
        no_compose.attrs.compose = None;
        assert!(from_list(&no_compose, item("u1", Some("u1"), Some("ab12"))).is_none(), "state has no compose file");
    }

    #[test]
    fn list_items_are_found_by_uuid_or_id_never_by_name() {
        let items = vec![
            item("cvm_1", Some("550e8400-e29b-41d4-a716-446655440000"), None),
            item("7", None, None),
            // Same name as the record below, another CVM.
            item("cvm_3", Some("other"), None),
        ];
        let index = ListIndex::new(&items);
        let find = |r: &ResourceRecord| index.find(r).map(|c| c.ids.id.clone());
        assert_eq!(find(&rec("x", Some("550E8400E29B41D4A716446655440000"), None)).as_deref(), Some("cvm_1"));
        assert_eq!(find(&rec("7", None, None)).as_deref(), Some("7"));
        assert_eq!(find(&rec("550e8400e29b41d4a716446655440000", None, None)).as_deref(), Some("cvm_1"));
        // A record with a uuid is matched by it alone: its id matching another item's id is
        // not this CVM.
        assert_eq!(find(&rec("7", Some("gone"), None)), None);
        assert_eq!(find(&rec("web-app", None, None)), None, "not by name");
        let records = [rec("7", None, None), rec("x", Some("nope"), None)];
        assert_eq!(index.unmatched(&records.iter().collect::<Vec<_>>()), 1);
    }
}
