//! Creating a CVM: provision, the app contract for an on-chain KMS, the env encrypted to the
//! CVM's key, commit, then its first boot.

use super::*;

impl Step {
    /// Creates the CVM and waits for it to run. `prior`: failed boots of this configuration
    /// before (a replacement of a tainted CVM).
    pub(super) async fn create(&self, c: &Change, prior: Vec<String>) -> Result<StepResult, StepError> {
        let after = c.after.clone().ok_or_else(|| StepError::internal("a create needs desired attributes"))?;
        let (env, env_kept) = self.resolve_env(c, &after.env)?;
        let node_id = match &after.node {
            Some(n) => Some(self.node_id(n).await?),
            None => None,
        };
        let req = attrs::provision(&after, node_id);
        // What the create cannot set, the update right after it does.
        let later = plan::set_after_create(&after);
        let state_attrs = attrs::before_after_create(CvmAttrs { env: env_kept, ..after.clone() }, &later);
        // Provisioning only computes (compose hash, app id, key); nothing exists until the
        // commit, so nothing is journaled yet and a refused provision leaves nothing behind.
        self.events.status(c.address.as_str(), "provisioning");
        let prov = self.api.provision(&req).await?;
        self.note_hash(c, &prov.compose_hash);
        let (app_id, deployed) = self.app_id(c, &prov, &state_attrs).await?;
        let encrypted_env = self.encrypted_env(c, &env, &prov, &app_id).await?;
        // The journal entry carries the app id this provision gave (a fresh one per create):
        // after a crash it is what proves a CVM was made by this commit. Never the name alone.
        let detail = create_detail(c, &state_attrs, &app_id, Some(&prov.compose_hash), &prior);
        let entry = self.journal(c, "create", None, to_json(&detail)?);
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "creating");
        let commit = CommitRequest {
            app_id: app_id.clone(),
            compose_hash: prov.compose_hash.clone(),
            encrypted_env,
            env_keys: after.env_keys(),
            kms_id: prov.kms_id.clone(),
            contract_address: deployed.as_ref().map(|d| d.contract_address.clone()),
            deployer_address: deployed.as_ref().map(|d| d.deployer_address.clone()),
            commit_token: prov.commit_token.clone(),
        };
        let ids = self.commit_provision(c, &commit, &entry).await?;
        // The CVM exists now: record it in the batch that clears the journal, so no crash can
        // forget it. It is tainted only if it then fails to run (a kill while it boots is not a
        // failed create).
        let (rec_ids, rec) = self.created_record(c, &ids, app_id, state_attrs.clone(), &prov.compose_hash, prior);
        let path_id = rec_ids.id.clone();
        let done = std::iter::once(entry.id.clone()).chain(deployed.map(|d| d.journal_id)).collect();
        // Should state be lost from here on, say which CVM it no longer knows.
        let unrecorded = |e: StepError| {
            e.then(Next::Import { address: c.address.clone(), id: path_id.clone(), name: after.name.clone() })
        };
        self.commit(Batch { put: vec![rec.clone()], journal_done: done, ..Default::default() })
            .await
            .map_err(unrecorded)?;
        let remote = match self.waiter.until_ready(&rec_ids, |s| self.events.status(c.address.as_str(), s)).await {
            Ok(r) => r,
            Err(WaitError::Failed { cvm, .. }) => {
                return Err(self.failed_boot(c, rec, &cvm).await?);
            }
            // Still booting, or the API did not answer: not a failed boot (yet). The next
            // plan sees how it ends.
            Err(e) => return Err(StepError::from(e).then(Next::PlanShows)),
        };
        let ids = CloudIds { id: path_id.clone(), ..remote.ids.clone() };
        let rec = self.record(c, ids.clone(), state_attrs, Some(&remote), false);
        self.commit(Batch { put: vec![rec], ..Default::default() }).await.map_err(unrecorded)?;
        if !later.is_empty() {
            let r = self.update_after_create(c, &ids, &later).await?;
            if !r.is_done() {
                return Ok(r);
            }
        }
        if c.after.as_ref().and_then(|a| a.power) == Some(Power::Stopped) {
            self.set_power(c, &rec_ids, PowerAction::Stop).await?;
        }
        Ok(StepResult::Done { id: Some(path_id) })
    }

    /// Creates instance `i` of a replicated CVM as another instance of instance 0's app
    /// (`POST /cvms/{id}/replicas`): same app id, compose and env; its own vm_uuid, instance
    /// id and node. Waits for it to run. Journaled (`replicate`, with the app id) before the
    /// request: a run that stops before recording it leaves the next run to adopt the app's
    /// one instance state does not hold (`reconcile`). `prior`: failed boots of this
    /// configuration before, as for [`Step::create`].
    ///
    /// A surge instance (`update_policy.max_surge`) is made before the roll, so it copies the
    /// source's revision and is recorded so; then one update brings it to the new revision
    /// ([`Step::surge_update`]). UNVERIFIED: the API's replicate copies the source instance's
    /// compose (the `phala` CLI's `cvms replicate --compose-hash` picks among the revisions
    /// the app's live instances run; neither SDK offers a new compose on replicate).
    pub(super) async fn replicate(
        &self,
        c: &Change,
        source: &Address,
        prior: Vec<String>,
    ) -> Result<StepResult, StepError> {
        let after = c.after.clone().ok_or_else(|| StepError::internal("a create needs desired attributes"))?;
        let src = self.current_record(source)?;
        let app_id = src.ids.app_id.clone().ok_or_else(|| StepError::refused(format!("{source} has no app id")))?;
        let node = c.instance.as_ref().and_then(|i| i.node.clone()).or_else(|| after.node.clone());
        let node_id = match &node {
            Some(n) => Some(self.node_id(n).await?),
            None => None,
        };
        let surge = c.instance.as_ref().is_some_and(|i| i.surge);
        let state_attrs = if surge {
            CvmAttrs { node: after.node.clone().or(src.attrs.node.clone()), ..src.attrs.clone() }
        } else {
            let (_, env_kept) = self.resolve_env(c, &after.env)?;
            CvmAttrs { env: env_kept, ..after.clone() }
        };
        // The app's instances now: after a crash, the one new since then is this replicate's,
        // whoever else made instances of the app (`reconcile`).
        let before = self.api.app_instances(&app_id).await?;
        let before = before.iter().map(|r| r.ids.vm_uuid.clone().unwrap_or_else(|| r.ids.id.clone())).collect();
        let detail = CreateDetail {
            instances_before: Some(before),
            surge,
            ..create_detail(c, &state_attrs, &app_id, src.compose_hash.as_deref(), &prior)
        };
        let entry = self.journal(c, "replicate", Some(src.ids.id.clone()), to_json(&detail)?);
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), &format!("replicating {source}"));
        let ids = match self.api.replicate(&src.ids.id, &app_id, node_id).await {
            Ok(ids) => ids,
            Err(e) => {
                if e.changed_nothing() {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                }
                return Err(e.into());
            }
        };
        self.effect(&c.address, |e| e.created = true);
        let hash = src.compose_hash.clone().unwrap_or_default();
        let (rec_ids, rec) = self.created_record(c, &ids, app_id, state_attrs.clone(), &hash, prior);
        self.commit(Batch { put: vec![rec.clone()], journal_done: vec![entry.id.clone()], ..Default::default() })
            .await?;
        let remote = match self.waiter.until_ready(&rec_ids, |s| self.events.status(c.address.as_str(), s)).await {
            Ok(r) => r,
            Err(WaitError::Failed { cvm, .. }) => return Err(self.failed_boot(c, rec, &cvm).await?),
            Err(e) => return Err(StepError::from(e).then(Next::PlanShows)),
        };
        let ids = CloudIds { id: rec_ids.id.clone(), ..remote.ids.clone() };
        let rec = self.record(c, ids.clone(), state_attrs, Some(&remote), false);
        self.commit(Batch { put: vec![rec], ..Default::default() }).await?;
        if surge {
            let r = self.surge_update(c, &ids).await?;
            if !r.is_done() {
                return Ok(r);
            }
        }
        if after.power == Some(Power::Stopped) {
            self.set_power(c, &rec_ids, PowerAction::Stop).await?;
        }
        Ok(StepResult::Done { id: Some(rec_ids.id) })
    }

    /// Says so when the API's compose hash is not the one the plan previewed (the API's is
    /// authoritative).
    fn note_hash(&self, c: &Change, api_hash: &str) {
        if let Some(h) = c.compose_hash.as_ref().filter(|h| h.after != api_hash) {
            tracing::warn!(address = %c.address, planned = %h.after, api = %api_hash, "the API's compose hash differs from the planned preview; the API's is authoritative");
            self.events.status(
                c.address.as_str(),
                &format!(
                    "note: the API's compose hash {} differs from the preview {}; using the API's",
                    plan::render::short_hash(api_hash),
                    plan::render::short_hash(&h.after)
                ),
            );
        }
    }

    /// The new CVM's app id: the provision's, or for an on-chain KMS the app contract this run
    /// deploys (the CLI's create path), with what deploying it recorded.
    async fn app_id(
        &self,
        c: &Change,
        prov: &Provisioned,
        state_attrs: &CvmAttrs,
    ) -> Result<(String, Option<DeployedApp>), StepError> {
        let deployed = match (&prov.app_id, &self.onchain) {
            (Some(_), _) => None,
            (None, Some(oc)) => Some(oc.deploy_app(&self.onchain_ctx(c, None, None, state_attrs, None), prov).await?),
            (None, None) => {
                return Err(StepError::refused(
                    "this KMS needs an app contract deployed on chain before the CVM can be created, and on-chain registration is not configured",
                ));
            }
        };
        let app_id = prov.app_id.clone().or_else(|| deployed.as_ref().map(|d| d.app_id.clone())).unwrap_or_default();
        if app_id.is_empty() {
            return Err(StepError::refused("the API gave no app id for the new CVM"));
        }
        Ok((app_id, deployed))
    }

    /// The env encrypted to the new CVM's key, the one its KMS signed for its app id (checked
    /// first; the provision's must be the same); `None` when there is no env.
    async fn encrypted_env(
        &self,
        c: &Change,
        env: &[(String, String)],
        prov: &Provisioned,
        app_id: &str,
    ) -> Result<Option<String>, StepError> {
        if env.is_empty() {
            return Ok(None);
        }
        let kms = prov.kms_id.as_deref().unwrap_or("phala");
        let key = self.checked_key(c, kms, app_id, prov.env_pubkey.as_deref()).await?;
        Ok(Some(encrypt_env(env, &key)?))
    }

    /// Commits the provision. When the answer is unclear the create may or may not have
    /// happened: the journal entry stays for the next run to reconcile, unless the API clearly
    /// refused it.
    async fn commit_provision(
        &self,
        c: &Change,
        commit: &CommitRequest,
        entry: &JournalEntry,
    ) -> Result<CloudIds, StepError> {
        match self.api.commit_provision(commit).await {
            Ok(ids) => {
                self.effect(&c.address, |e| e.created = true);
                Ok(ids)
            }
            Err(e) => {
                if e.changed_nothing() {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                }
                Err(e.into())
            }
        }
    }

    /// The record of a CVM just created, by its path id (the UUID when the API gave one), not
    /// yet seen running (`boot.pending`): should it fail to boot, even after this run was
    /// killed, the next plan knows the create failed.
    fn created_record(
        &self,
        c: &Change,
        ids: &CloudIds,
        app_id: String,
        attrs: CvmAttrs,
        compose_hash: &str,
        prior: Vec<String>,
    ) -> (CloudIds, ResourceRecord) {
        let mut rec_ids = ids.clone();
        rec_ids.id = ids.vm_uuid.clone().unwrap_or_else(|| ids.id.clone());
        rec_ids.app_id = rec_ids.app_id.or(Some(app_id));
        let mut rec = self.record(c, rec_ids.clone(), attrs, None, false);
        rec.compose_hash = Some(compose_hash.to_string());
        rec.status = Some(CvmStatus::Starting);
        rec.boot = BootHistory { pending: true, failures: prior };
        (rec_ids, rec)
    }

    /// Sets what the create could not (`later`) with one update of the new CVM, as an update
    /// in place of those attributes alone.
    pub(super) async fn update_after_create(
        &self,
        c: &Change,
        ids: &CloudIds,
        later: &[Attr],
    ) -> Result<StepResult, StepError> {
        let after = c.after.clone().ok_or_else(|| StepError::internal("a create needs desired attributes"))?;
        let current = self.shared.current.lock().expect("state lock").get(&c.address).map(|r| r.attrs.clone());
        let before = current.ok_or_else(|| StepError::internal(format!("{} is not in state", c.address)))?;
        let attributes = later
            .iter()
            .map(|&a| plan::AttrChange {
                name: a,
                before: before.get(a),
                after: after.get(a),
                forces_replacement: false,
            })
            .collect();
        // The create sent the compose: no hash to change or register.
        self.update_config(&Change { compose_hash: None, ..follow_up(c, ids, before, attributes) }).await
    }

    /// Brings a surge instance just replicated (on its source's revision) to the new one with
    /// one update of what differs: it serves nothing yet, so its restart costs no
    /// availability. On-chain KMS: the new compose hash is registered here, before any
    /// instance of the roll runs it. Counted as the create it is, not as a change.
    pub(super) async fn surge_update(&self, c: &Change, ids: &CloudIds) -> Result<StepResult, StepError> {
        let after = c.after.clone().ok_or_else(|| StepError::internal("a create needs desired attributes"))?;
        let before = self.current_record(&c.address)?.attrs;
        // Where it runs was the replicate's to choose.
        let attributes: Vec<_> = plan::diff_attrs(&before, &after, true)
            .into_iter()
            .filter(|a| a.name.patched() && !a.forces_replacement)
            .collect();
        if attributes.is_empty() {
            return Ok(StepResult::Done { id: Some(ids.id.clone()) });
        }
        self.events.status(c.address.as_str(), "bringing the surge instance to the new revision");
        self.update_config(&follow_up(c, ids, before, attributes)).await
    }

    /// Records a create whose boot failed: tainted, with why. Returns the step's error: the
    /// next apply replaces it once; after a replacement fails too, it is left for a person.
    pub(super) async fn failed_boot(
        &self,
        c: &Change,
        mut rec: ResourceRecord,
        remote: &RemoteCvm,
    ) -> Result<StepError, StepError> {
        let uuid = remote.ids.vm_uuid.clone().unwrap_or_else(|| rec.ids.id.clone());
        // The status poll that saw the failure may have brought the boot error along.
        let reason = match remote.boot.error.clone() {
            Some(e) => Some(e),
            None => match self.api.boot_errors(std::slice::from_ref(&uuid)).await {
                Ok(mut errors) => errors.remove(&uuid),
                Err(e) => {
                    tracing::warn!(address = %c.address, "cannot read the boot error: {e}");
                    None
                }
            },
        }
        .unwrap_or_else(|| format!("status `{}` (the API gave no boot error)", remote.status));
        rec.tainted = true;
        rec.status = Some(remote.status.clone());
        rec.boot.pending = false;
        rec.boot.failures.push(reason.clone());
        let tries = rec.boot.failures.len();
        let logs = boot_log_command(&rec.ids);
        self.commit(Batch { put: vec![rec], ..Default::default() }).await?;
        Ok(StepError::new(Failure::BootFailed { reason, again: tries >= plan::health::MAX_BOOT_TRIES, logs }))
    }
}

/// One update of `attributes` of a CVM its create step just made (it restarts the CVM). The
/// summary counts that CVM as added only (`Report::counts`).
fn follow_up(c: &Change, ids: &CloudIds, before: CvmAttrs, attributes: Vec<plan::AttrChange>) -> Change {
    Change {
        action: Action::Update,
        ids: Some(ids.clone()),
        before: Some(before),
        attributes,
        reasons: vec![plan::Reason::RestartsCvm],
        ..c.clone()
    }
}

/// The journal entry of a create or replicate: what the record keeps once the CVM exists, the
/// app id that proves which CVM it made, and the failed boots (`prior`) of the CVM it replaces.
fn create_detail(c: &Change, attrs: &CvmAttrs, app_id: &str, hash: Option<&str>, prior: &[String]) -> CreateDetail {
    CreateDetail {
        attrs: attrs.clone(),
        app_id: Some(app_id.to_string()),
        compose_hash: hash.map(str::to_string),
        prevent_destroy: c.prevent_destroy,
        secrets_scope: c.secrets_scope.clone(),
        boot_failures: prior.to_vec(),
        instances_before: None,
        surge: false,
    }
}
