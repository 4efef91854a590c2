//! The gates around a step: the batch before it must run and pass its `health:` check
//! before it starts; once it ran, the attestation gate and its own `health:` check.

use super::*;

impl Step {
    /// The attestation gate: the CVM, now running, must attest the app, instance and compose
    /// state records for it. A mismatch marks it `unverified` in state and fails the step; a
    /// match clears an earlier mark. A CVM kept stopped cannot attest and is left as it is.
    pub(super) async fn gate(&self, c: &Change, checker: &crate::verify::Checker) -> Result<(), StepError> {
        let Some(mut rec) = self.shared.current.lock().expect("state lock").get(&c.address).cloned() else {
            return Ok(());
        };
        if rec.attrs.power == Some(Power::Stopped) {
            return Ok(());
        }
        self.events.status(c.address.as_str(), "verifying the attestation");
        let reported = self.shared.os_hashes.lock().expect("os hashes lock").get(&c.address).cloned();
        let v = checker.verify_record(self.api.as_ref(), &rec, reported).await?;
        let problem = v.problem();
        if rec.unverified != problem {
            rec.unverified = problem.clone();
            self.commit(Batch { put: vec![rec], ..Default::default() }).await?;
        }
        match problem {
            None => Ok(()),
            Some(p) => Err(StepError::new(Failure::Unverified(p))),
        }
    }

    /// An instance's update starts only once the batch before runs and passes its `health:`
    /// check, also where that batch was updated by an earlier run (a roll paused, or killed
    /// while that batch restarted): at most `max_unavailable` are down at any moment. (With
    /// `pause_on_failure: false`, once the batch before has ended, however it ended.)
    ///
    /// A failed precondition is one failure, of the first instance that found it: the others
    /// of its batch are skipped, naming it, as they were never touched.
    ///
    /// A surge instance's delete waits so for every instance of its CVM (the roll's end).
    pub(super) async fn batch_before_runs(&self, c: &Change) -> Result<(), StepResult> {
        let gated = |i: &&plan::Instance| c.action == Action::Update || (c.action == Action::Delete && i.surge);
        let Some(i) = c.instance.as_ref().filter(gated) else {
            return Ok(());
        };
        for a in &i.after {
            let Some(rec) = self.shared.current.lock().expect("state lock").get(a).cloned() else { continue };
            if rec.attrs.power == Some(Power::Stopped) {
                continue;
            }
            self.events.status(c.address.as_str(), &format!("waiting for {a} to run"));
            let at = |s: &str| self.events.status(c.address.as_str(), &format!("{a}: {s}"));
            // Not started yet: an interrupt stops the wait, and the step is skipped.
            let ran = tokio::select! {
                ran = self.waiter.until_ready(&rec.ids, at) => ran,
                _ = self.cancel.cancelled() => return Err(StepResult::Skipped(INTERRUPTED.into())),
            };
            // Without `pause_on_failure` the batch before only has to have ended, however.
            if !i.pause_on_failure {
                continue;
            }
            let cell =
                self.shared.preconditions.lock().expect("preconditions lock").entry(a.clone()).or_default().clone();
            let mut mine = None;
            let failed = cell
                .get_or_init(|| async {
                    let held = match ran {
                        Ok(_) => match &c.health {
                            Some(h) => self.health(&Change { address: a.clone(), ..c.clone() }, h, &self.cancel).await,
                            None => Ok(()),
                        },
                        Err(e) => Err(StepError::from(e).context(format!("{a}"))),
                    };
                    mine = held.err();
                    mine.is_some().then(|| c.address.clone())
                })
                .await;
            // A check the interrupt cut short is no failure of the batch before.
            if self.cancel.is_cancelled() {
                return Err(StepResult::Skipped(INTERRUPTED.into()));
            }
            if let Some(e) = mine {
                return Err(StepResult::Failed(Box::new(
                    e.context(format!("precondition: {a} runs and passes its health check")),
                )));
            }
            if let Some(first) = failed {
                return Err(StepResult::Skipped(format!("the precondition on {a} failed (reported for {first})")));
            }
        }
        Ok(())
    }

    /// The `health:` gate: once the CVM runs, a GET of the manifest's URL (the instance's ids
    /// put in) must answer the expected status within the timeout. A CVM kept stopped is not
    /// checked. Failing fails the step, so the instances of later batches wait (the roll
    /// pauses); the record keeps the update, which did happen.
    /// `cancel`: what cuts the check short (a precondition's waiter stops on an interrupt; a
    /// step's own gate, in-flight work, does not).
    pub(super) async fn health(
        &self,
        c: &Change,
        h: &crate::manifest::HealthCheck,
        cancel: &CancellationToken,
    ) -> Result<(), StepError> {
        let Some(rec) = self.shared.current.lock().expect("state lock").get(&c.address).cloned() else {
            return Ok(());
        };
        if rec.attrs.power == Some(Power::Stopped) {
            return Ok(());
        }
        let index = c.address.index().map_or(String::new(), |i| i.to_string());
        let url = h
            .url
            .replace("{instance_id}", rec.ids.instance_id.as_deref().unwrap_or(""))
            .replace("{app_id}", rec.ids.app_id.as_deref().unwrap_or(""))
            .replace("{vm_uuid}", rec.ids.vm_uuid.as_deref().unwrap_or(""))
            .replace("{index}", &index);
        self.events.status(c.address.as_str(), "checking health");
        let timeout = Duration::from_secs(h.timeout.into());
        crate::providers::health::check(&url, h.expect_status, timeout, cancel)
            .await
            .map_err(|e| StepError::new(Failure::Unhealthy(e.to_string())))
    }
}
