//! The end of a roll with surge instances (`update_policy.max_surge`): once every instance of
//! the roll is done, its surge instances are deleted.

use super::*;

impl Executor {
    /// Deletes the surge instances of each roll whose instances (and surge instances) this run
    /// all finished, one at a time, each journaled as any delete. A roll that did not finish
    /// (a failed or skipped batch, Ctrl-C) keeps them, recorded in state: the next apply
    /// resumes the roll and deletes them at its end.
    pub(super) async fn end_rolls(
        &self,
        plan: &Plan,
        waiter: &Arc<Waiter>,
        shared: &Arc<Shared>,
        endpoint: &Arc<str>,
        results: &mut BTreeMap<Address, (Action, StepResult)>,
    ) {
        for r in plan.rolls.iter().filter(|r| !r.surge.is_empty()) {
            let done = |a: &Address| results.get(a).is_some_and(|(_, x)| x.is_done());
            let surge_done = r.surge.iter().all(|a| results.get(a).is_none_or(|(_, x)| x.is_done()));
            if self.cancel.is_cancelled() || !surge_done || !r.instances.iter().all(done) {
                // Counted among the run's steps: said, and kept for the run that ends the roll.
                for a in &r.surge {
                    self.skip(a, "kept: the roll did not finish; the apply that finishes it deletes it", results);
                }
                continue;
            }
            // Every instance of the CVM, also those an earlier run updated.
            let instances: Vec<Address> = {
                let current = shared.current.lock().expect("state lock");
                current
                    .values()
                    .filter(|x| x.address.key() == r.address.key() && !x.surge)
                    .map(|x| x.address.clone())
                    .collect()
            };
            for a in &r.surge {
                let Some(rec) = shared.current.lock().expect("state lock").get(a).cloned() else {
                    self.skip(a, "not in state: nothing to delete", results);
                    continue;
                };
                let c = Change {
                    ids: Some(rec.ids.clone()),
                    before: Some(rec.attrs.clone()),
                    reasons: vec![plan::Reason::Surge { of: r.address.clone() }],
                    instance: Some(plan::Instance {
                        index: a.index().unwrap_or_default(),
                        source: None,
                        node: None,
                        after: instances.clone(),
                        pause_on_failure: true,
                        surge: true,
                    }),
                    health: plan
                        .changes
                        .iter()
                        .find(|x| r.instances.contains(&x.address))
                        .and_then(|x| x.health.clone()),
                    ..Change::new(a.clone(), Action::Delete)
                };
                self.events.started(a.as_str(), Action::Delete);
                let t = Instant::now();
                let step = self.step(waiter, shared, endpoint);
                let res = match step.batch_before_runs(&c).await {
                    Err(r) => r,
                    Ok(()) => match step.delete(&c).await {
                        Ok(()) => StepResult::Done { id: None },
                        Err(e) => StepResult::Failed(Box::new(e)),
                    },
                };
                self.events.finished(a.as_str(), Action::Delete, &res, t.elapsed());
                results.insert(a.clone(), (Action::Delete, res));
            }
        }
    }

    /// A surge delete this run does not make, reported as skipped with `why` (one of the run's
    /// steps). The result of the surge's create this run, when it did not succeed, is kept: a
    /// failure is never hidden behind the skip.
    fn skip(&self, a: &Address, why: &str, results: &mut BTreeMap<Address, (Action, StepResult)>) {
        let r = StepResult::Skipped(why.to_string());
        self.events.finished(a.as_str(), Action::Delete, &r, Duration::ZERO);
        if results.get(a).is_none_or(|(_, x)| x.is_done()) {
            results.insert(a.clone(), (Action::Delete, r));
        }
    }
}
