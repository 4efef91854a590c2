//! Verifying what the cloud says: the KMS's signature on an env-encryption key before any
//! secret is encrypted to it ([`kms_key`]), and a CVM's attestation after it boots
//! ([`attest`]: the RTMR3 event log replayed and compared with what teeform deployed).

pub mod attest;
pub mod kms_key;
