//! A CVM's attributes as apply sends and records them, derived from the schema
//! (`crate::model::schema`): the create request, the unified PATCH of an update, and the
//! attributes state records once the API has answered. Pure: the executor does the calls.

use crate::model::schema::{Patch, Read, SCHEMA};
use crate::model::{Attr, CvmAttrs, EnvVal, RemoteCvm};
use crate::plan::AttrChange;
use crate::providers::{PatchRequest, ProvisionRequest};

/// Keys only: the requests carry no env value (values go encrypted, on their own).
fn keys_only(mut a: CvmAttrs) -> CvmAttrs {
    for v in a.env.values_mut() {
        *v = EnvVal::default();
    }
    a
}

/// The create request for `after`, with the defaults a create sends for what the manifest
/// leaves out, and `node_id` for the node `after.node` names.
pub(super) fn provision(after: &CvmAttrs, node_id: Option<u64>) -> ProvisionRequest {
    ProvisionRequest { attrs: keys_only(after.clone().with_create_defaults()), node_id }
}

/// The unified PATCH for the attributes that `changed` changes to `after`: each as its
/// [`Patch`] says. `sizes`: the vCPUs and memory of the instance type `after` names, when the
/// type changes (the PATCH takes sizes, not type names); `encrypted_env`: every env value,
/// when env changes.
pub(super) fn patch(
    changed: &[AttrChange],
    before: &CvmAttrs,
    after: &CvmAttrs,
    sizes: Option<(u32, u32)>,
    encrypted_env: Option<String>,
) -> PatchRequest {
    let mut req = PatchRequest { attrs: keys_only(after.clone()), ..Default::default() };
    for a in changed {
        match a.name.spec().patch {
            Patch::Value => {
                req.send.insert(a.name);
            }
            Patch::Env => {
                // The env set is replaced as a whole: every value goes; the keys when they change.
                if before.env.keys().ne(after.env.keys()) {
                    req.send.insert(a.name);
                }
                req.encrypted_env = encrypted_env.clone();
            }
            Patch::AsSizes => {
                if let Some((vcpu, memory)) = sizes {
                    (req.attrs.vcpu, req.attrs.memory) = (Some(vcpu), Some(memory));
                    req.send.extend([Attr::Vcpu, Attr::Memory]);
                }
            }
            Patch::No => {}
        }
    }
    req
}

/// The attributes a create records before the update after it ([`Reason::SetAfterCreate`]):
/// those the create cannot set are not the CVM's yet, so a create interrupted before that
/// update leaves them for the next plan to set.
///
/// [`Reason::SetAfterCreate`]: crate::plan::Reason::SetAfterCreate
pub(super) fn before_after_create(mut a: CvmAttrs, later: &[Attr]) -> CvmAttrs {
    for &attr in later {
        a.copy_from(attr, &CvmAttrs::default());
    }
    a
}

/// What state records of a CVM an apply changed: the desired attributes, those the manifest
/// leaves unmanaged as the API reports them (so state records what the CVM really has), and
/// the run state as the API's status means it, not as planned.
pub(super) fn as_observed(mut a: CvmAttrs, remote: &RemoteCvm) -> CvmAttrs {
    for spec in SCHEMA {
        match spec.read {
            Read::Reported | Read::Learned if !a.is_set(spec.attr) => a.copy_from(spec.attr, &remote.attrs),
            Read::Status => a.power = remote.status.power().or(a.power),
            Read::Reported | Read::WithCompose | Read::Keys | Read::Learned | Read::NotReported => {}
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CvmStatus, Power};

    fn change(attr: Attr) -> AttrChange {
        AttrChange { name: attr, before: Default::default(), after: Default::default(), forces_replacement: false }
    }

    #[test]
    fn an_update_sends_what_changed_as_the_schema_says() {
        let before = CvmAttrs { env: [("A".to_string(), EnvVal::plain("1"))].into(), ..Default::default() };
        let after = CvmAttrs {
            vcpu: Some(2),
            instance_type: Some("tdx.large".into()),
            env: [("A".to_string(), EnvVal::plain("2"))].into(),
            power: Some(Power::Stopped),
            ..Default::default()
        };
        let changed: Vec<AttrChange> = [Attr::InstanceType, Attr::Env, Attr::Power].map(change).into();
        let req = patch(&changed, &before, &after, Some((8, 16384)), Some("enc".into()));
        // The type as sizes; env values encrypted, its keys not (they did not change); no power.
        assert_eq!(req.send.iter().copied().collect::<Vec<_>>(), [Attr::Vcpu, Attr::Memory]);
        assert_eq!((req.attrs.vcpu, req.attrs.memory), (Some(8), Some(16384)));
        assert_eq!(req.encrypted_env.as_deref(), Some("enc"));
        assert!(req.attrs.env.values().all(|v| v.value.is_none()), "no env value in the request");
        let after_keys = CvmAttrs { env: [("B".to_string(), EnvVal::plain("2"))].into(), ..Default::default() };
        let req = patch(&[change(Attr::Env)], &before, &after_keys, None, Some("enc".into()));
        assert!(req.send.contains(&Attr::Env), "changed keys are sent");
    }

    #[test]
    fn state_records_unmanaged_attributes_and_the_run_state_as_observed() {
        let desired = CvmAttrs { vcpu: Some(2), power: Some(Power::Running), ..Default::default() };
        let remote = RemoteCvm {
            ids: Default::default(),
            status: CvmStatus::Stopped,
            in_progress: false,
            compose_hash: None,
            attrs: CvmAttrs { vcpu: Some(4), memory: Some(2048), node: Some("n".into()), ..Default::default() },
            app_compose: None,
            os_image_hash: None,
            env_pubkey: None,
            kms_info: None,
            boot: Default::default(),
        };
        let a = as_observed(desired, &remote);
        // The node the API placed it on is learned (the manifest did not name one).
        assert_eq!(
            (a.vcpu, a.memory, a.node.as_deref(), a.power),
            (Some(2), Some(2048), Some("n"), Some(Power::Stopped))
        );
    }
}
