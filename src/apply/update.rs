//! Changing a CVM in place (one PATCH, a rename, start and stop) and deleting one.

use super::*;

impl Step {
    /// Starts or stops the CVM and waits until it is so.
    pub(super) async fn set_power(&self, c: &Change, ids: &CloudIds, action: PowerAction) -> Result<(), StepError> {
        let target = match action {
            PowerAction::Start => Power::Running,
            PowerAction::Stop => Power::Stopped,
        };
        let mut rec = self.current_record(&c.address)?;
        rec.attrs.power = Some(target);
        let entry = self.journal(c, "update", Some(ids.id.clone()), serde_json::json!({ "attrs": rec.attrs }));
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), if action == PowerAction::Start { "starting" } else { "stopping" });
        if let Err(e) = self.api.power(&ids.id, action).await {
            // A refused request changed nothing; anything else may have, so the entry stays for
            // the next run to re-read.
            if e.changed_nothing() {
                self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
            }
            return Err(e.into());
        }
        self.effect(&c.address, |e| e.updated = true);
        rec.updated_at = now_rfc3339();
        self.commit(Batch { put: vec![rec.clone()], journal_done: vec![entry.id], ..Default::default() }).await?;
        let remote = self.waiter.until(ids, target, |s| self.events.status(c.address.as_str(), s)).await.map_err(
            |e| match e {
                WaitError::Failed { .. } => StepError::from(e).then(Next::BootLog(boot_log_command(ids))),
                e => e.into(),
            },
        )?;
        rec.status = Some(remote.status.clone());
        self.commit(Batch { put: vec![rec], ..Default::default() }).await
    }

    /// Renames the CVM in place (`PATCH /cvms/{id}/name`): journaled, sent, recorded. The
    /// CVM keeps its identity and does not restart, so there is nothing to wait for.
    pub(super) async fn rename(&self, c: &Change, ids: &CloudIds) -> Result<(), StepError> {
        let name = c
            .after
            .as_ref()
            .map(|a| a.name.clone())
            .ok_or_else(|| StepError::internal("a rename needs the new name"))?;
        let mut rec = self.current_record(&c.address)?;
        rec.attrs.name = name.clone();
        let entry = self.journal(c, "update", Some(ids.id.clone()), serde_json::json!({ "attrs": rec.attrs }));
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "renaming");
        if let Err(e) = self.api.rename(&ids.id, &name).await {
            // A refused request changed nothing; anything else may have, so the entry stays for
            // the next run to re-read.
            if e.changed_nothing() {
                self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
            }
            return Err(e.into());
        }
        self.effect(&c.address, |e| e.updated = true);
        rec.updated_at = now_rfc3339();
        self.commit(Batch { put: vec![rec], journal_done: vec![entry.id], ..Default::default() }).await
    }

    pub(super) async fn patch_request(
        &self,
        c: &Change,
        before: &CvmAttrs,
        after: &CvmAttrs,
        env: &[(String, String)],
        pubkey: Option<&str>,
    ) -> Result<PatchRequest, StepError> {
        let encrypted_env = if c.changes(Attr::Env) {
            let key = pubkey
                .ok_or_else(|| StepError::refused("the CVM's env encryption key is unknown; run plan with refresh"))?;
            Some(encrypt_env(env, key)?)
        } else {
            None
        };
        let sizes = match &after.instance_type {
            Some(t) if c.changes(Attr::InstanceType) => {
                let types = self.shared.types.get_or_try_init(|| self.api.instance_types()).await?;
                let ty = types.iter().find(|x| &x.id == t).ok_or_else(|| {
                    StepError::refused(format!(
                        "unknown instance type `{t}` (known: {})",
                        types.iter().map(|x| x.id.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                Some((ty.vcpu, ty.memory_mb))
            }
            _ => None,
        };
        Ok(attrs::patch(&c.attributes, before, after, sizes, encrypted_env))
    }

    pub(super) fn onchain_ctx<'a>(
        &'a self,
        c: &'a Change,
        cvm_id: Option<&'a str>,
        required: Option<&'a crate::providers::HashRequired>,
        attrs: &'a CvmAttrs,
        update_journal_id: Option<&'a str>,
    ) -> OnChainCtx<'a> {
        OnChainCtx {
            change: c,
            cvm_id,
            required,
            attrs,
            update_journal_id,
            api: self.api.as_ref(),
            store: self.store.as_ref(),
            events: self.events.as_ref(),
            cancel: &self.cancel,
            endpoint: &self.endpoint,
        }
    }

    pub(super) async fn onchain_outcome(
        &self,
        c: &Change,
        ids: &CloudIds,
        o: OnChainOutcome,
    ) -> Result<StepResult, StepError> {
        match o {
            OnChainOutcome::Committed { journal_id, attrs } => self.finish_update(c, ids, *attrs, &journal_id).await,
            OnChainOutcome::Paused(why) => Ok(StepResult::Paused(why)),
        }
    }

    /// An update in place: a stop first (`power: stopped`), then the configuration in one
    /// `PATCH`, then a start (a stopped CVM the manifest wants running), so it boots once.
    pub(super) async fn update(&self, c: &Change) -> Result<StepResult, StepError> {
        let ids = c.ids.clone().ok_or_else(|| StepError::internal("an update needs the CVM's id"))?;
        let power = if c.changes(Attr::Power) { c.after.as_ref().and_then(|a| a.power) } else { None };
        if power == Some(Power::Stopped) {
            self.set_power(c, &ids, PowerAction::Stop).await?;
        }
        if c.changes(Attr::Name) {
            self.rename(c, &ids).await?;
        }
        let mut result = StepResult::Done { id: Some(ids.id.clone()) };
        if c.attributes.iter().any(|a| a.name.patched()) {
            result = self.update_config(c).await?;
            if !result.is_done() {
                return Ok(result);
            }
        }
        if power == Some(Power::Running) {
            self.set_power(c, &ids, PowerAction::Start).await?;
        }
        Ok(result)
    }

    pub(super) async fn update_config(&self, c: &Change) -> Result<StepResult, StepError> {
        let ids = c.ids.clone().ok_or_else(|| StepError::internal("an update needs the CVM's id"))?;
        let before = c.before.clone().unwrap_or_default();
        let after = c.after.clone().ok_or_else(|| StepError::internal("an update needs desired attributes"))?;
        let (env, env_kept) = self.resolve_env(c, &after.env)?;
        let mut state_attrs = after.clone();
        state_attrs.env = env_kept;
        // An update an earlier run paused for on-chain registration is finished, not sent again.
        if let Some(oc) = &self.onchain
            && let Some(o) = oc.continue_pending(&self.onchain_ctx(c, Some(&ids.id), None, &state_attrs, None)).await?
        {
            return self.onchain_outcome(c, &ids, o).await;
        }
        let rec = self.shared.current.lock().expect("state lock").get(&c.address).cloned();
        let mut pubkey = rec.as_ref().and_then(|r| r.env_pubkey.clone());
        if c.changes(Attr::Env) {
            // The key the CVM reports is only compared: what is encrypted to is the key its
            // KMS signed, checked first.
            let app_id = rec.as_ref().and_then(|r| r.ids.app_id.clone()).or(ids.app_id.clone());
            let app_id = match app_id {
                Some(a) => a,
                None => self.api.get_cvm(&ids.id).await?.and_then(|r| r.ids.app_id).unwrap_or_default(),
            };
            // The KMS by the id (else slug) its info in state gives, as a create names it; else
            // by its kind. UNVERIFIED: that the API takes the kind (`phala`) as a KMS name.
            let info = rec.as_ref().and_then(|r| r.kms_info.as_ref());
            let named = info.and_then(|k| ["id", "slug"].iter().find_map(|f| k.get(*f)?.as_str().map(str::to_string)));
            let kms = named.or(after.kms.clone()).or(before.kms.clone()).unwrap_or_else(|| "phala".into());
            pubkey = Some(self.checked_key(c, &kms, &app_id, pubkey.as_deref()).await?);
        }
        let req = self.patch_request(c, &before, &after, &env, pubkey.as_deref()).await?;
        let entry = self.journal(c, "update", Some(ids.id.clone()), serde_json::json!({ "attrs": state_attrs }));
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "updating");
        let prepare_only = c.kms.is_some() && self.onchain.as_ref().is_some_and(|o| o.prepare_only());
        let mut outcome = self.api.patch(&ids.id, &req, prepare_only).await;
        if matches!(&outcome, Err(e) if e.kind == ErrorKind::Conflict) {
            // Another operation (e.g. a restart) is still running: wait for it, then once more.
            self.events.status(c.address.as_str(), "waiting for a previous operation to finish");
            self.waiter.until_ready(&ids, |s| self.events.status(c.address.as_str(), s)).await?;
            outcome = self.api.patch(&ids.id, &req, prepare_only).await;
        }
        match outcome {
            Ok(PatchOutcome::Accepted { .. }) => {}
            Ok(PatchOutcome::Unchanged) => return self.finish_unchanged(c, &ids, state_attrs, &entry.id).await,
            Ok(PatchOutcome::HashRequired(h)) => {
                let Some(oc) = &self.onchain else {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                    return Err(StepError::refused(format!(
                        "the API requires compose hash 0x{} to be registered on chain first (HTTP 465), and on-chain registration is not configured for this CVM",
                        h.compose_hash
                    )));
                };
                let ctx = self.onchain_ctx(c, Some(&ids.id), Some(&h), &state_attrs, Some(&entry.id));
                let o = oc.on_hash_required(&ctx).await?;
                return self.onchain_outcome(c, &ids, o).await;
            }
            Err(e) => {
                // A refused request changed nothing; anything else may have, so the entry stays
                // for the next run to re-read.
                if e.changed_nothing() {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                }
                return Err(e.into());
            }
        }
        self.finish_update(c, &ids, state_attrs, &entry.id).await
    }

    /// Records an update the API found already in place (`no_change`): nothing changed in the
    /// cloud and nothing restarts, so there is no restart to wait for.
    pub(super) async fn finish_unchanged(
        &self,
        c: &Change,
        ids: &CloudIds,
        attrs: CvmAttrs,
        journal_id: &str,
    ) -> Result<StepResult, StepError> {
        self.events.status(c.address.as_str(), "already so: the API changed nothing and nothing restarts");
        let prev = self.shared.current.lock().expect("state lock").get(&c.address).cloned();
        let mut rec = self.record(c, ids.clone(), attrs, None, false);
        if let Some(p) = &prev {
            rec.env_pubkey = p.env_pubkey.clone();
            rec.kms_info = p.kms_info.clone();
            rec.compose_hash = p.compose_hash.clone();
            rec.status = p.status.clone();
            rec.attrs.power = p.attrs.power;
        }
        self.commit(Batch { put: vec![rec], journal_done: vec![journal_id.to_string()], ..Default::default() }).await?;
        Ok(StepResult::Done { id: Some(ids.id.clone()) })
    }

    pub(super) async fn delete(&self, c: &Change) -> Result<(), StepError> {
        let ids = c.ids.clone().ok_or_else(|| StepError::internal("a delete needs the CVM's id"))?;
        let entry = self.journal(c, "delete", Some(ids.id.clone()), serde_json::Value::Null);
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "deleting");
        self.api.delete(&ids.id).await?;
        self.effect(&c.address, |e| e.deleted = true);
        // An update paused for on-chain registration has nothing left to finish once its CVM
        // is gone; dropping it in the same write keeps `--resume` from chasing a deleted CVM.
        let journal = self.store.journal().await.map_err(StepError::state_read)?;
        let paused =
            journal.into_iter().filter(|e| e.op == onchain::PENDING_OP && e.cloud_id.as_ref() == Some(&ids.id));
        let done = std::iter::once(entry.id).chain(paused.map(|e| e.id)).collect();
        self.commit(Batch { remove: vec![c.address.clone()], journal_done: done, ..Default::default() }).await
    }
}
