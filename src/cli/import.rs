//! `teeform import cvm.NAME CVM_ID`: bring an existing CVM under management.

use std::time::Duration;

use super::context::Ctx;
use super::error::{CliError, CliResult, Hint, exit};
use super::shared::session::same_endpoint;
use crate::manifest::diag::did_you_mean;
use crate::model::{Address, EnvVal, ResourceRecord, now_rfc3339};
use crate::state::Batch;

pub async fn run(ctx: &Ctx, address: &str, id: &str, lock_timeout: Duration) -> CliResult {
    let cfg = ctx.load(&[])?;
    let address = Address::parse(address).map_err(|_| {
        CliError::new(format!("`{address}` is not a CVM address")).hint("addresses look like `cvm.web`")
    })?;
    let key = address.key();
    let Some(cvm) = cfg.cvms.get(key) else {
        let mut e = CliError::new(format!("the manifest has no `cvms.{key}`"))
            .hint("declare the CVM in the manifest first, so the next plan compares it with what you want");
        if let Some(s) = did_you_mean(key, cfg.cvms.keys().map(String::as_str)) {
            e = e.hint(format!("did you mean `{}`?", Address::cvm(s)));
        }
        return Err(e);
    };
    let store = ctx.open_state_for(Some(&cfg), "import", lock_timeout).await?;
    let snap = store.snapshot().await?;
    if snap.resources.contains_key(&address) {
        return Err(CliError::new(format!("{address} is already in state")).hint(Hint::run(
            "",
            format!("state rm {address}"),
            " first to import a different CVM",
        )));
    }
    let api = ctx.api(&cfg.endpoint).await?;
    same_endpoint(&api, snap.resources.values().map(|r| (r.address.as_str(), r.endpoint.as_deref())))?;
    let remote = api
        .client
        .get_cvm(id)
        .await?
        .ok_or_else(|| CliError::new(format!("no CVM `{id}` exists at {}", api.endpoint)))?;
    if let Some((other, _)) = snap.resources.iter().find(|(_, r)| {
        r.ids.app_id.is_some() && r.ids.app_id == remote.ids.app_id && r.ids.vm_uuid == remote.ids.vm_uuid
    }) {
        return Err(CliError::new(format!("that CVM is already managed as {other}")));
    }
    same_app(&address, &remote, &snap.resources)?;
    let mut attrs = remote.attrs.clone();
    // Env values cannot be read back; keys are known, values are not.
    for v in attrs.env.values_mut() {
        *v = EnvVal::default();
    }
    // What the API does not report (shutdown settings) is taken as the manifest has it, and
    // so is the node where the API does not say.
    let configured = crate::plan::configured_attrs(cvm);
    for spec in crate::model::SCHEMA.iter() {
        use crate::model::schema::Read;
        if spec.read == Read::NotReported || (spec.read == Read::Learned && !attrs.is_set(spec.attr)) {
            attrs.copy_from(spec.attr, &configured);
        }
    }
    let path_id = remote.ids.vm_uuid.clone().unwrap_or_else(|| remote.ids.id.clone());
    let rec = ResourceRecord {
        surge: false,
        address: address.clone(),
        ids: crate::model::CloudIds { id: path_id, ..remote.ids.clone() },
        attrs,
        compose_hash: remote.compose_hash.clone(),
        env_pubkey: remote.env_pubkey.clone(),
        kms_info: remote.kms_info.clone(),
        status: Some(remote.status.clone()),
        tainted: false,
        boot: Default::default(),
        dependencies: cvm.depends_on.iter().map(|d| Address::cvm(d)).collect(),
        updated_at: now_rfc3339(),
        unverified: None,
        endpoint: Some(api.endpoint.clone()),
        prevent_destroy: cvm.prevent_destroy,
        secrets_scope: None,
    };
    store.commit(Batch { put: vec![rec.clone()], ..Default::default() }).await?;
    store.close().await?;
    let sh = &ctx.shell;
    sh.println(&format!("Imported {address} (CVM {} \"{}\").", rec.ids.id, rec.attrs.name))?;
    if !remote.attrs.env.is_empty() {
        sh.println("Its env values cannot be read back, so the next apply sends the manifest's env once.")?;
    }
    sh.println(&format!("Run `{}` to compare it with the manifest.", ctx.command_line("plan")))?;
    Ok(exit::OK)
}

/// The instances of a replicated CVM are one app (instance `i > 0` is a replica of instance 0):
/// a CVM of another app imported as one of them would be renamed and rolled as if it were.
/// Refused when any instance of the same manifest entry already in state has another app id.
fn same_app(
    address: &Address,
    remote: &crate::model::RemoteCvm,
    resources: &std::collections::BTreeMap<Address, ResourceRecord>,
) -> CliResult<()> {
    if address.index().is_none() {
        return Ok(());
    }
    let sibling = resources
        .values()
        .filter(|r| r.address.key() == address.key() && r.address.index().is_some() && r.address != *address)
        .min_by_key(|r| r.address.index());
    let Some(sibling) = sibling else { return Ok(()) };
    if sibling.ids.app_id.is_some() && sibling.ids.app_id == remote.ids.app_id {
        return Ok(());
    }
    let shown = |a: &Option<String>| a.clone().unwrap_or_else(|| "(none)".into());
    Err(CliError::new(format!(
        "CVM `{}` (\"{}\") is in app {}, but {} is in app {}: the instances of {} are one app",
        remote.ids.vm_uuid.as_deref().unwrap_or(&remote.ids.id),
        remote.attrs.name,
        shown(&remote.ids.app_id),
        sibling.address,
        shown(&sibling.ids.app_id),
        address.entry(),
    ))
    .hint(format!(
        "import a CVM of app {} (a replica of {}), or import this one under its own `cvms:` entry",
        shown(&sibling.ids.app_id),
        sibling.address
    )))
}
