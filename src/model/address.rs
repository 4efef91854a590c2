//! Resource addresses: `cvm.NAME`, where `NAME` is the CVM's key under `cvms:`, and
//! `cvm.NAME[i]` for instance `i` of a CVM with `replicas:` above 1.
//!
//! An [`Address`] is written (in state, journal entries, saved plans and JSON) as that
//! string, and compares and sorts as it, so maps keyed by addresses keep the order they had
//! as strings and can be looked up with a `&str`.
//!
//! Code asks an address for its [`Address::key`] (the manifest entry) and its
//! [`Address::index`] (the instance of a replicated CVM) and never takes the string apart.
//! A CVM of one replica has no index: its address is what it was before replicas existed.

use std::borrow::Borrow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The one resource type teeform manages so far.
const CVM: &str = "cvm.";

/// Where a resource is: `cvm.NAME` or `cvm.NAME[i]`. See the module docs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(String);

/// A string that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CVM address (addresses look like `cvm.web` or `cvm.web[0]`)")]
pub struct AddressError(pub String);

impl Address {
    /// The address of the CVM under `cvms.KEY`. The manifest checks keys; an address is
    /// made only of a key it accepted (or one read back from state).
    pub fn cvm(key: &str) -> Address {
        Address(format!("{CVM}{key}"))
    }

    /// The address of instance `index` of the replicated CVM under `cvms.KEY`: `cvm.KEY[i]`.
    pub fn instance(key: &str, index: u32) -> Address {
        Address(format!("{CVM}{key}[{index}]"))
    }

    /// Reads `cvm.KEY` or `cvm.KEY[i]` (KEY: ASCII letters, digits, `-`, `_`, as the
    /// manifest's keys are; `i` a decimal number without leading zeros).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let bad = || AddressError(s.to_string());
        let rest = s.strip_prefix(CVM).ok_or_else(bad)?;
        let (key, index) = split(rest).ok_or_else(bad)?;
        match index {
            Some(i) if is_key(key) && i.parse::<u32>().is_ok() && (i == "0" || !i.starts_with('0')) => {
                Ok(Address(s.to_string()))
            }
            None if is_key(key) => Ok(Address(s.to_string())),
            _ => Err(bad()),
        }
    }

    /// The CVM's key under `cvms:` (`web` for `cvm.web` and for `cvm.web[2]`).
    pub fn key(&self) -> &str {
        split(&self.0[CVM.len()..]).map_or("", |(k, _)| k)
    }

    /// The instance of a replicated CVM (`2` for `cvm.web[2]`); `None` for `cvm.web`.
    pub fn index(&self) -> Option<u32> {
        split(&self.0[CVM.len()..]).and_then(|(_, i)| i?.parse().ok())
    }

    /// The address of the manifest entry: `cvm.web` for `cvm.web[2]` (and for `cvm.web`).
    pub fn entry(&self) -> Address {
        Address::cvm(self.key())
    }

    /// Whether the two name a CVM in common: the same address, or the same key where one of
    /// them names every instance (`cvm.web` and `cvm.web[1]`).
    pub fn overlaps(&self, other: &Address) -> bool {
        self.key() == other.key()
            && (self.index().is_none() || other.index().is_none() || self.index() == other.index())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `KEY` or `KEY[INDEX]` as (KEY, INDEX); `None` for a bracket that is not closed at the end.
fn split(rest: &str) -> Option<(&str, Option<&str>)> {
    match rest.split_once('[') {
        None => Some((rest, None)),
        Some((key, tail)) => {
            let i = tail.strip_suffix(']')?;
            (!i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())).then_some((key, Some(i)))
        }
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
        let i = Address::instance("web", 12);
        assert_eq!((i.as_str(), i.key(), i.index()), ("cvm.web[12]", "web", Some(12)));
        assert_eq!(Address::parse("cvm.web[0]").unwrap().index(), Some(0));
        assert_eq!(i.entry(), a);
        assert_eq!(a.index(), None);
        assert_eq!(serde_json::from_value::<Address>("cvm.web[3]".into()).unwrap(), Address::instance("web", 3));
        let bad_instances =
            ["cvm.web[]", "cvm.web[01]", "cvm.web[-1]", "cvm.web[1", "cvm.web[1]x", "cvm.[1]", "cvm.web[1][2]"];
        for bad in
            ["web", "cvm.", "cvm.a b", "data.x.y", "cvm.ü", "", "cvm.web[99999999999]"].into_iter().chain(bad_instances)
        {
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
