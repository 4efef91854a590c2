//! An instance of a managed app that no record holds, as the plan's text shows it.

use std::fmt::Write as _;

use crate::model::Address;
use crate::plan::Unmanaged;
use crate::style::Palette;

/// An instance of a managed app that no record holds: what it is, and how to manage it.
pub(in crate::plan) fn unmanaged(out: &mut String, p: &Palette, u: &Unmanaged) {
    let made = "made outside teeform, e.g. `phala cvms replicate`";
    let _ = writeln!(out, "  {}", p.bold(&format!("# an instance of {}'s app is not in state ({made})", u.entry)));
    let fields = [
        ("app_id", Some(&u.app_id)),
        ("vm_uuid", u.vm_uuid.as_ref()),
        ("instance_id", u.instance_id.as_ref()),
        ("name", Some(&u.name)),
        ("node", u.node.as_ref()),
        ("status", Some(&u.status.to_string())),
        ("compose_hash", u.compose_hash.as_ref()),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            let _ = writeln!(out, "      {k:<12} = \"{v}\"");
        }
    }
    match &u.import_as {
        Some(a) => {
            let then =
                u.replicas_after.map(|n| format!(", then set `replicas: {n}` on {}", u.entry)).unwrap_or_default();
            let _ = writeln!(out, "    {} teeform import {a} {}{then}", p.cyan("to manage it:"), u.id);
            if u.instead_of_create {
                let _ = writeln!(
                    out,
                    "    {} this plan creates {a}: importing this instance as {a} instead avoids a new CVM",
                    p.cyan("note:")
                );
            }
        }
        None if !u.after_roll.is_empty() => {
            let held = u.after_roll.iter().map(Address::as_str).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                out,
                "    {} apply the roll of {} to its end first (its surge instances hold {held}); the next plan gives the `teeform import`",
                p.cyan("to manage it:"),
                u.entry
            );
        }
        None => {
            let _ =
                writeln!(out, "    {} this plan leaves it as it is (it is not teeform's to destroy)", p.cyan("note:"));
        }
    }
    out.push('\n');
}
