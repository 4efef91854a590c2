//! Reconciling the journal: operations that were in flight when a previous run stopped.
//!
//! A create that may have happened is looked up by the app id its provision gave and adopted
//! only when that CVM is there; a replicate (another instance of an app) adopts the app's one
//! instance no record holds; an update or delete is re-read. Afterwards state never claims
//! what the cloud does not have, no CVM teeform created is forgotten, and no CVM teeform did
//! not create is taken: a CVM is never adopted because of its name.

use serde::{Deserialize, Serialize};

use crate::model::{Address, CloudIds, CvmAttrs, ResourceRecord, now_rfc3339};
use crate::providers::PhalaApi;
use crate::state::{Batch, JournalEntry, StateError, Store};

/// What a `create` journal entry holds (its `detail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateDetail {
    /// The attributes state records once the CVM exists (env as digests).
    pub attrs: CvmAttrs,
    /// The app id the provision answer gave (or the app contract this run deployed), written
    /// before the commit is sent. A CVM with this app id is one this create made: the API
    /// gives each provision its own app id. (UNVERIFIED for Phala Cloud: that two
    /// provisions of the same compose never share an app id while both are uncommitted; the
    /// simulator gives each its own.) Entries written by teeform before 0.2 have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_hash: Option<String>,
    /// What the record keeps beside the attributes ([`ResourceRecord::prevent_destroy`],
    /// [`ResourceRecord::secrets_scope`]), so an adopted CVM is recorded as the create meant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_scope: Option<Address>,
    /// A replicate's: the app's instances (vm_uuid, else id) just before the call, so that
    /// after a crash the one instance new since then is this replicate's, whoever else made
    /// instances of the app. Entries written by teeform before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_before: Option<Vec<String>>,
    /// Failed boots of this configuration before this create or replicate (it replaces a
    /// tainted CVM): the record starts with them, so a CVM adopted after a crash is still
    /// replaced only once ([`crate::model::BootHistory::failures`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_failures: Vec<String>,
    /// A surge instance's replicate ([`ResourceRecord::surge`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub surge: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Addresses of CVMs found and adopted into state.
    pub adopted: Vec<Address>,
    /// Interrupted creates that cannot be proven to have made a CVM (journaled by an older
    /// teeform, without an app id), as (address, CVM name): nothing was adopted. If a CVM of
    /// that name exists, the next plan refuses to create it again and offers `import`.
    pub unproven: Vec<(Address, String)>,
    /// A CVM an interrupted create made whose address state already gives another CVM, as
    /// (address, CVM path id): left out of state, to be imported under another address.
    pub displaced: Vec<(Address, String)>,
    /// Interrupted replicates after which more than one instance of the app is new, as
    /// (address, the new instances' vm_uuids): one is the replicate's, the others were made
    /// outside teeform meanwhile, and nothing tells which; none was adopted.
    pub ambiguous: Vec<(Address, Vec<String>)>,
    /// Entries cleared because nothing had happened or state already knew.
    pub cleared: usize,
    /// Entries kept because they are waiting on something (e.g. on-chain registration).
    pub kept: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot check an interrupted operation on {address}")]
    Api {
        address: Address,
        #[source]
        source: crate::providers::ApiError,
    },
}

/// The first of `owners` (address, endpoint it was made at) that lives at an endpoint other
/// than `endpoint`. Against the wrong endpoint every such CVM would look deleted, and the next
/// apply would create it again and forget the original.
pub fn elsewhere<'a>(
    endpoint: &str,
    owners: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Option<(&'a str, &'a str)> {
    let norm = |e: &str| e.trim_end_matches('/').to_string();
    let here = norm(endpoint);
    owners.into_iter().find_map(|(addr, e)| e.filter(|e| norm(e) != here).map(|e| (addr, e)))
}

pub async fn reconcile(store: &dyn Store, api: &dyn PhalaApi) -> Result<Reconciled, ReconcileError> {
    let entries = store.journal().await?;
    let mut out = Reconciled::default();
    if entries.is_empty() {
        return Ok(out);
    }
    let snap = store.snapshot().await?;
    // Instances adopted by the entries before: held, though `snap` predates them.
    let mut adopted_ids: Vec<String> = Vec::new();
    for e in entries {
        if e.op == "pending_onchain" {
            out.kept += 1;
            continue;
        }
        let api_err = |source| ReconcileError::Api { address: e.address.clone(), source };
        let mut batch = Batch { journal_done: vec![e.id.clone()], ..Default::default() };
        match e.op.as_str() {
            "create" => created(&e, &snap, api, &mut batch, &mut out).await.map_err(api_err)?,
            "replicate" => match replica(&e, &snap, &adopted_ids, api).await.map_err(api_err)? {
                Made::One(remote) => {
                    batch.put.push(adopt(&e, &remote));
                    out.adopted.push(e.address.clone());
                    adopted_ids.push(path_id(&remote));
                }
                Made::Several(ids) => out.ambiguous.push((e.address.clone(), ids)),
                Made::Unknown => {}
            },
            "update" => {
                // Whether the update landed is unknown: take what the cloud says now. Env values
                // cannot be read back, so those the update meant to change become unknown and
                // the next apply sends them again (one more restart, never a false claim).
                if let (Some(rec), Some(id)) = (snap.resources.get(&e.address), &e.cloud_id) {
                    match api.get_cvm(id).await.map_err(api_err)? {
                        Some(remote) => {
                            let (mut merged, _) = crate::plan::merge_refresh(rec, &remote);
                            if let Some(intended) = intent(&e) {
                                for (k, v) in merged.attrs.env.iter_mut() {
                                    if intended.env.get(k).is_some_and(|want| !want.same_as(v)) {
                                        *v = Default::default();
                                    }
                                }
                            }
                            batch.put.push(merged);
                        }
                        None => batch.remove.push(e.address.clone()),
                    }
                }
            }
            "delete" => {
                if let Some(id) = &e.cloud_id
                    && api.get_cvm(id).await.map_err(api_err)?.is_none()
                {
                    batch.remove.push(e.address.clone());
                }
            }
            _ => {}
        }
        if batch.put.is_empty() && batch.remove.is_empty() {
            out.cleared += 1;
        }
        store.commit(batch).await?;
    }
    Ok(out)
}

/// An interrupted create: the CVM with the app id its provision gave, adopted into `batch`
/// when it exists (or reported displaced, when state holds another CVM at its address).
async fn created(
    e: &JournalEntry,
    snap: &crate::state::Snapshot,
    api: &dyn PhalaApi,
    batch: &mut Batch,
    out: &mut Reconciled,
) -> Result<(), crate::providers::ApiError> {
    // Without the provision's app id nothing proves which CVM (if any) this create made; one
    // found by name may be anybody's.
    let Some(app_id) = detail(e).and_then(|d| d.app_id) else {
        out.unproven.push((e.address.clone(), e.name.clone()));
        return Ok(());
    };
    let held = snap.resources.get(&e.address);
    if !held.is_some_and(|r| r.ids.app_id.as_deref().is_some_and(|a| same_app(a, &app_id)))
        && let Some(remote) = api.get_cvm(&format!("app_{}", bare(&app_id))).await?
        && remote.ids.app_id.as_deref().is_some_and(|a| same_app(a, &app_id))
        && remote.attrs.name == e.name
    {
        match held {
            None => {
                batch.put.push(adopt(e, &remote));
                out.adopted.push(e.address.clone());
            }
            Some(_) => out.displaced.push((e.address.clone(), path_id(&remote))),
        }
    }
    Ok(())
}

/// What an interrupted replicate made, as far as can be told.
enum Made {
    /// This instance: adopt it.
    One(Box<crate::model::RemoteCvm>),
    /// One of these (vm_uuids): others made instances of the app meanwhile.
    Several(Vec<String>),
    /// Nothing, or nothing that can be told (state holds the address already; an entry of an
    /// older teeform with no instance, or more than one, unaccounted for): the next plan makes
    /// the instance again, and shows any instance no record holds.
    Unknown,
}

/// The instance an interrupted replicate made: of the app's instances that no record holds
/// (nor `adopted`, by the entries before), the one that is new since the entry listed the
/// app's instances (`instances_before`). An entry without that list (an older teeform's)
/// adopts the one instance no record holds, if there is exactly one.
async fn replica(
    e: &JournalEntry,
    snap: &crate::state::Snapshot,
    adopted: &[String],
    api: &dyn PhalaApi,
) -> Result<Made, crate::providers::ApiError> {
    let Some(d) = detail(e) else { return Ok(Made::Unknown) };
    let Some(app_id) = &d.app_id else { return Ok(Made::Unknown) };
    if snap.resources.contains_key(&e.address) {
        return Ok(Made::Unknown);
    }
    let norm = |x: &str| x.trim().to_ascii_lowercase().replace('-', "");
    let uuid = |i: &CloudIds| norm(i.vm_uuid.as_deref().unwrap_or(&i.id));
    let held: Vec<String> =
        snap.resources.values().map(|r| uuid(&r.ids)).chain(adopted.iter().map(|a| norm(a))).collect();
    let before: Option<Vec<String>> = d.instances_before.map(|b| b.iter().map(|x| norm(x)).collect());
    let mut new: Vec<_> = api
        .app_instances(app_id)
        .await?
        .into_iter()
        .filter(|r| !held.contains(&uuid(&r.ids)))
        .filter(|r| before.as_ref().is_none_or(|b| !b.contains(&uuid(&r.ids))))
        .collect();
    Ok(match (new.len(), &before) {
        (1, _) => Made::One(Box::new(new.pop().expect("one"))),
        (n, Some(_)) if n > 1 => Made::Several(new.iter().map(path_id).collect()),
        _ => Made::Unknown,
    })
}

fn detail(e: &JournalEntry) -> Option<CreateDetail> {
    serde_json::from_value(e.detail.clone()).ok()
}

fn intent(e: &JournalEntry) -> Option<CvmAttrs> {
    serde_json::from_value(e.detail.get("attrs")?.clone()).ok()
}

/// An app id without `app_` or `0x`, lower case (the API writes 40 hex digits).
fn bare(app_id: &str) -> String {
    app_id.trim_start_matches("app_").trim_start_matches("0x").to_ascii_lowercase()
}

fn same_app(a: &str, b: &str) -> bool {
    bare(a) == bare(b)
}

fn path_id(remote: &crate::model::RemoteCvm) -> String {
    remote.ids.vm_uuid.clone().unwrap_or_else(|| remote.ids.id.clone())
}

fn adopt(e: &JournalEntry, remote: &crate::model::RemoteCvm) -> ResourceRecord {
    let d = detail(e);
    let mut attrs = intent(e).unwrap_or_else(|| remote.attrs.clone());
    attrs.name = remote.attrs.name.clone();
    ResourceRecord {
        address: e.address.clone(),
        ids: CloudIds { id: path_id(remote), ..remote.ids.clone() },
        attrs,
        compose_hash: remote.compose_hash.clone(),
        env_pubkey: remote.env_pubkey.clone(),
        kms_info: remote.kms_info.clone(),
        status: Some(remote.status.clone()),
        tainted: remote.status.is_failed(),
        // A create adopted before it was seen running: a later failed boot is a failed create.
        // It keeps the failed boots of the CVM it replaced.
        boot: crate::model::BootHistory {
            pending: !remote.is_ready() && !remote.status.is_failed(),
            failures: {
                let mut failures = d.as_ref().map(|d| d.boot_failures.clone()).unwrap_or_default();
                if remote.status.is_failed() {
                    failures.push(format!("status `{}`", remote.status));
                }
                failures
            },
        },
        dependencies: vec![],
        updated_at: now_rfc3339(),
        unverified: None,
        endpoint: e.endpoint.clone(),
        prevent_destroy: d.as_ref().is_some_and(|d| d.prevent_destroy),
        surge: d.as_ref().is_some_and(|d| d.surge),
        secrets_scope: d.and_then(|d| d.secrets_scope),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BootFacts, CvmStatus, RemoteCvm};

    #[test]
    fn an_adopted_replacement_keeps_the_failed_boots_it_was_journaled_with() {
        let detail = CreateDetail {
            attrs: CvmAttrs::default(),
            app_id: Some("ab".into()),
            compose_hash: None,
            prevent_destroy: false,
            secrets_scope: None,
            instances_before: None,
            surge: false,
            boot_failures: vec!["first boot failed".into()],
        };
        let entry = JournalEntry {
            id: "j".into(),
            address: Address::instance("web", 2),
            op: "replicate".into(),
            name: "web".into(),
            cloud_id: None,
            started_at: String::new(),
            detail: serde_json::to_value(&detail).unwrap(),
            endpoint: None,
        };
        let remote = |status: &str| RemoteCvm {
            ids: CloudIds { id: "u".into(), ..Default::default() },
            status: CvmStatus::parse(status),
            in_progress: false,
            compose_hash: None,
            attrs: CvmAttrs::default(),
            app_compose: None,
            os_image_hash: None,
            env_pubkey: None,
            kms_info: None,
            boot: BootFacts::default(),
        };
        let booting = adopt(&entry, &remote("starting"));
        assert_eq!((booting.boot.pending, booting.boot.failures.len()), (true, 1));
        let failed = adopt(&entry, &remote("error"));
        assert!(failed.tainted);
        assert_eq!(failed.boot.failures, ["first boot failed", "status `error`"]);
    }

    #[test]
    fn only_a_recorded_other_endpoint_counts() {
        let api = "https://cloud-api.phala.com/api/v1";
        // (endpoint now, what state recorded, found elsewhere)
        type Case<'a> = (&'a str, &'a [Option<&'a str>], Option<&'a str>);
        let cases: &[Case] = &[
            (api, &[], None),
            (api, &[None], None),
            (api, &[Some(api)], None),
            (api, &[Some("https://cloud-api.phala.com/api/v1/")], None),
            ("local", &[Some("local"), None], None),
            ("local", &[Some(api)], Some(api)),
            (api, &[Some(api), Some("local")], Some("local")),
            ("http://127.0.0.1:1/api/v1", &[Some("http://127.0.0.1:2/api/v1")], Some("http://127.0.0.1:2/api/v1")),
        ];
        for (now, recorded, want) in cases {
            let owners = recorded.iter().map(|e| ("cvm.x", *e));
            assert_eq!(elsewhere(now, owners).map(|(_, e)| e), *want, "{now} vs {recorded:?}");
        }
    }
}
