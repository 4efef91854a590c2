//! The seeded image catalogs: small, with a name order that differs from the creation
//! order, images that are not ready/available, GPU and non-GPU images, and one custom image
//! per service.

use super::{CatalogData, NSCALE_ORG, NSCALE_REGION, NscaleEntry, OCI_COMPARTMENT, OCI_TENANCY, OciEntry};
use super::{nscale_image, oci_image};

impl CatalogData {
    pub fn seeded() -> CatalogData {
        CatalogData {
            nscale_regions: vec![NSCALE_REGION.into()],
            nscale_orgs: vec![NSCALE_ORG.into()],
            nscale: nscale(),
            oci_compartments: vec![OCI_TENANCY.into(), OCI_COMPARTMENT.into()],
            oci: oci(),
        }
    }
}

/// nscale: global images in the seeded region, and one of an organization.
fn nscale() -> Vec<NscaleEntry> {
    let r = NSCALE_REGION;
    let g = |img| NscaleEntry { region: r.into(), organization: None, image: img };
    let noble = ("ubuntu", "24.04", "noble");
    vec![
        g(nscale_image(
            "ubu2404-gpu-550",
            "2024-06-10T09:00:00Z",
            noble,
            Some(("NVIDIA", "550.54.15", &["H100", "H200"])),
            "ready",
        )),
        g(nscale_image(
            "ubu2404-gpu-535",
            "2024-03-01T09:00:00Z",
            noble,
            Some(("NVIDIA", "535.183.01", &["A100", "H100"])),
            "ready",
        )),
        g(nscale_image("ubu2404-base", "2024-07-01T09:00:00Z", noble, None, "ready")),
        g(nscale_image(
            "ubu2204-gpu-550",
            "2024-08-01T09:00:00Z",
            ("ubuntu", "22.04", "jammy"),
            Some(("NVIDIA", "550.54.15", &["H100"])),
            "ready",
        )),
        g(nscale_image(
            "ubu2404-gpu-560-rc",
            "2024-09-01T09:00:00Z",
            noble,
            Some(("NVIDIA", "560.28.03", &["H100"])),
            "creating",
        )),
        g(nscale_image(
            "ubu2404-gpu-555-failed",
            "2024-08-20T09:00:00Z",
            noble,
            Some(("NVIDIA", "555.42.02", &["H100"])),
            "failed",
        )),
        g(nscale_image(
            "rocky9-amd",
            "2024-05-01T09:00:00Z",
            ("rocky", "9.4", "blue-onyx"),
            Some(("AMD", "6.7.0", &["MI300X"])),
            "ready",
        )),
        NscaleEntry {
            region: r.into(),
            organization: Some(NSCALE_ORG.into()),
            image: nscale_image(
                "acme-ubu2404-gpu",
                "2024-10-01T09:00:00Z",
                noble,
                Some(("NVIDIA", "550.54.15", &["H100"])),
                "ready",
            ),
        },
    ]
}

/// OCI: platform images (every compartment), and one custom image in the compartment.
fn oci() -> Vec<OciEntry> {
    let platform = |name: &str, os: &str, ver: &str, created: &str, state: &str, shapes: &[&str]| OciEntry {
        compartment: None,
        shapes: shapes.iter().map(|s| s.to_string()).collect(),
        image: oci_image(name, os, ver, created, state),
    };
    let std = &["VM.Standard.E4.Flex", "VM.Standard.E5.Flex", "VM.Standard3.Flex"];
    let gpu = &["BM.GPU.H100.8", "VM.GPU.A10.1"];
    let ol = "Oracle Linux";
    vec![
        platform("Oracle-Linux-8.10-2024.09.30-0", ol, "8", "2024-09-30T21:10:29.600Z", "AVAILABLE", std),
        platform("Oracle-Linux-8.10-2024.08.29-0", ol, "8", "2024-08-29T20:01:02.100Z", "AVAILABLE", std),
        platform("Oracle-Linux-8.10-2024.07.31-0", ol, "8", "2024-07-31T19:00:00.000Z", "AVAILABLE", std),
        platform("Oracle-Linux-8.10-Gen2-GPU-2024.10.01-0", ol, "8", "2024-10-01T10:00:00.000Z", "AVAILABLE", gpu),
        platform("Oracle-Linux-8.10-2024.11.05-0", ol, "8", "2024-11-05T08:00:00.000Z", "PROVISIONING", std),
        platform("Oracle-Linux-9.4-2024.09.30-0", ol, "9", "2024-09-30T22:00:00.000Z", "AVAILABLE", std),
        platform(
            "Canonical-Ubuntu-24.04-2024.10.04-0",
            "Canonical Ubuntu",
            "24.04",
            "2024-10-04T05:00:00.000Z",
            "AVAILABLE",
            std,
        ),
        platform(
            "Canonical-Ubuntu-22.04-2024.09.30-0",
            "Canonical Ubuntu",
            "22.04",
            "2024-09-30T05:00:00.000Z",
            "AVAILABLE",
            std,
        ),
        OciEntry {
            compartment: Some(OCI_COMPARTMENT.into()),
            shapes: std.iter().map(|s| s.to_string()).collect(),
            image: {
                let mut i = oci_image("teeform-base-2024.10.15", ol, "8", "2024-10-15T12:00:00.000Z", "AVAILABLE");
                i["compartmentId"] = OCI_COMPARTMENT.into();
                i
            },
        },
    ]
}
