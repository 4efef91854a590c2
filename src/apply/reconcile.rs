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
    for e in entries {
        if e.op == "pending_onchain" {
            out.kept += 1;
            continue;
        }
        let api_err = |source| ReconcileError::Api { address: e.address.clone(), source };
        let mut batch = Batch { journal_done: vec![e.id.clone()], ..Default::default() };
        match e.op.as_str() {
            "create" => match detail(&e).and_then(|d| d.app_id) {
                // Without the provision's app id nothing proves which CVM (if any) this
                // create made; one found by name may be anybody's.
                None => out.unproven.push((e.address.clone(), e.name.clone())),
                Some(app_id) => {
                    let held = snap.resources.get(&e.address);
                    if !held.is_some_and(|r| r.ids.app_id.as_deref().is_some_and(|a| same_app(a, &app_id)))
                        && let Some(remote) = api.get_cvm(&format!("app_{}", bare(&app_id))).await.map_err(api_err)?
                        && remote.ids.app_id.as_deref().is_some_and(|a| same_app(a, &app_id))
                        && remote.attrs.name == e.name
                    {
                        match held {
                            None => {
                                batch.put.push(adopt(&e, &remote));
                                out.adopted.push(e.address.clone());
                            }
                            Some(_) => out.displaced.push((e.address.clone(), path_id(&remote))),
                        }
                    }
                }
            },
            "replicate" => {
                if let Some(remote) = replica(&e, &snap, api).await.map_err(api_err)? {
                    batch.put.push(adopt(&e, &remote));
                    out.adopted.push(e.address.clone());
                }
            }
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

/// The instance an interrupted replicate made, when it can be told: the app's one instance
/// that no record of state holds. None when state holds the address already (the replicate
/// was recorded), or when no instance, or more than one, is unaccounted for (one made outside
/// teeform cannot be told from this one; the next plan makes the instance again).
async fn replica(
    e: &JournalEntry,
    snap: &crate::state::Snapshot,
    api: &dyn PhalaApi,
) -> Result<Option<crate::model::RemoteCvm>, crate::providers::ApiError> {
    let Some(app_id) = detail(e).and_then(|d| d.app_id) else { return Ok(None) };
    if snap.resources.contains_key(&e.address) {
        return Ok(None);
    }
    let held = |r: &crate::model::RemoteCvm| {
        snap.resources.values().any(|rec| {
            let uuid = |i: &CloudIds| i.vm_uuid.clone().unwrap_or_else(|| i.id.clone());
            uuid(&rec.ids) == uuid(&r.ids)
        })
    };
    let mut free: Vec<_> = api.app_instances(&app_id).await?.into_iter().filter(|r| !held(r)).collect();
    Ok(if free.len() == 1 { free.pop() } else { None })
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
        boot: crate::model::BootHistory {
            pending: !remote.is_ready() && !remote.status.is_failed(),
            failures: if remote.status.is_failed() { vec![format!("status `{}`", remote.status)] } else { vec![] },
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
    use super::elsewhere;

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
