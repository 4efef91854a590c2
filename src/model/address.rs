//! Resource addresses: `cvm.NAME`, where `NAME` is the CVM's key under `cvms:`.
//!
//! An [`Address`] is written (in state, journal entries, saved plans and JSON) as that
//! string, and compares and sorts as it, so maps keyed by addresses keep the order they had
//! as strings and can be looked up with a `&str`.
//!
//! Replicas will add an index (`cvm.NAME[i]`): code asks an address for its [`Address::key`]
//! (the manifest entry) and never takes the string apart, so adding one changes this file
//! (parsing, an `index()`) and not its users. Until then an index is refused.

use std::borrow::Borrow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The one resource type teeform manages so far.
const CVM: &str = "cvm.";

/// Where a resource is: `cvm.NAME`. See the module docs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(String);

/// A string that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CVM address (addresses look like `cvm.web`)")]
pub struct AddressError(pub String);

impl Address {
    /// The address of the CVM under `cvms.KEY`. The manifest checks keys; an address is
    /// made only of a key it accepted (or one read back from state).
    pub fn cvm(key: &str) -> Address {
        Address(format!("{CVM}{key}"))
    }

    /// Reads `cvm.KEY` (KEY: ASCII letters, digits, `-`, `_`, as the manifest's keys are).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        match s.strip_prefix(CVM) {
            Some(key) if is_key(key) => Ok(Address(s.to_string())),
            _ => Err(AddressError(s.to_string())),
        }
    }

    /// The CVM's key under `cvms:` (`web` for `cvm.web`).
    pub fn key(&self) -> &str {
        &self.0[CVM.len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Address, AddressError> {
        Address::parse(s)
    }
}

/// Sound because `Address` compares, sorts and hashes exactly as its string does.
impl Borrow<str> for Address {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Address {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// For tests' literals only: a string that is not an address panics.
#[cfg(test)]
impl From<&str> for Address {
    fn from(s: &str) -> Address {
        Address::parse(s).expect("a test's address literal")
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_write_and_sort_as_their_strings() {
        let a = Address::cvm("web");
        assert_eq!((a.as_str(), a.key()), ("cvm.web", "web"));
        assert_eq!(Address::parse("cvm.web-2_b").unwrap().key(), "web-2_b");
        assert_eq!(serde_json::to_value(&a).unwrap(), "cvm.web");
        assert_eq!(serde_json::from_value::<Address>("cvm.web".into()).unwrap(), a);
        for bad in ["web", "cvm.", "cvm.a b", "cvm.web[0]", "data.x.y", "cvm.ü", ""] {
            assert!(Address::parse(bad).is_err(), "{bad}");
            assert!(serde_json::from_value::<Address>(bad.into()).is_err(), "{bad}");
        }
        let mut by_address: Vec<Address> = ["cvm.b", "cvm.a-1", "cvm.a", "cvm.B"].map(Address::cvm_str).to_vec();
        let mut by_string: Vec<String> = by_address.iter().map(ToString::to_string).collect();
        by_address.sort();
        by_string.sort();
        assert_eq!(by_address.iter().map(ToString::to_string).collect::<Vec<_>>(), by_string);
        let map = std::collections::BTreeMap::from([(a.clone(), 1)]);
        assert_eq!(map.get("cvm.web"), Some(&1));
    }

    impl Address {
        fn cvm_str(s: &str) -> Address {
            Address::parse(s).unwrap()
        }
    }
}
