//! What a CVM's status says, read once at the provider edge into enums: the API's status
//! ([`CvmStatus`]) and the run state the manifest asks for ([`Power`]).
//!
//! Both are written (in state, saved plans and JSON) as the strings the API uses, so their
//! formats are those strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A CVM's run state: what `power:` in the manifest asks for, and what a status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    Running,
    Stopped,
}

impl Power {
    /// `running` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Power::Running => "running",
            Power::Stopped => "stopped",
        }
    }

    /// The status a CVM in this run state reports once no operation is in progress.
    pub fn status(self) -> CvmStatus {
        match self {
            Power::Running => CvmStatus::Running,
            Power::Stopped => CvmStatus::Stopped,
        }
    }
}

impl std::fmt::Display for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CVM's status as the API reports it (`status` of a CVM detail or list item).
///
/// The API's statuses are not all documented: `running`, `stopped`, the transitional `*ing`
/// ones and `error` are seen in the `phala` CLI and SDK; `failed`, `shutdown` and `exited`
/// are taken from dstack's VMM (UNVERIFIED for Phala Cloud). Anything else is kept as
/// [`CvmStatus::Unknown`] with the API's text, and means neither running nor stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CvmStatus {
    Running,
    Stopped,
    Starting,
    Restarting,
    Booting,
    Updating,
    Stopping,
    ShuttingDown,
    Shutdown,
    Exited,
    Error,
    Failed,
    /// A status teeform does not know, as the API wrote it (`unknown` when it wrote none).
    Unknown(String),
}

impl CvmStatus {
    /// Every status teeform knows, for tests and docs.
    pub const KNOWN: &[CvmStatus] = &[
        CvmStatus::Running,
        CvmStatus::Stopped,
        CvmStatus::Starting,
        CvmStatus::Restarting,
        CvmStatus::Booting,
        CvmStatus::Updating,
        CvmStatus::Stopping,
        CvmStatus::ShuttingDown,
        CvmStatus::Shutdown,
        CvmStatus::Exited,
        CvmStatus::Error,
        CvmStatus::Failed,
    ];

    /// Reads the API's text; never fails (an unknown status is [`CvmStatus::Unknown`]).
    pub fn parse(s: &str) -> CvmStatus {
        match s {
            "running" => CvmStatus::Running,
            "stopped" => CvmStatus::Stopped,
            "starting" => CvmStatus::Starting,
            "restarting" => CvmStatus::Restarting,
            "booting" => CvmStatus::Booting,
            "updating" => CvmStatus::Updating,
            "stopping" => CvmStatus::Stopping,
            "shutting_down" => CvmStatus::ShuttingDown,
            "shutdown" => CvmStatus::Shutdown,
            "exited" => CvmStatus::Exited,
            "error" => CvmStatus::Error,
            "failed" => CvmStatus::Failed,
            other => CvmStatus::Unknown(other.to_string()),
        }
    }

    /// The API's text.
    pub fn as_str(&self) -> &str {
        match self {
            CvmStatus::Running => "running",
            CvmStatus::Stopped => "stopped",
            CvmStatus::Starting => "starting",
            CvmStatus::Restarting => "restarting",
            CvmStatus::Booting => "booting",
            CvmStatus::Updating => "updating",
            CvmStatus::Stopping => "stopping",
            CvmStatus::ShuttingDown => "shutting_down",
            CvmStatus::Shutdown => "shutdown",
            CvmStatus::Exited => "exited",
            CvmStatus::Error => "error",
            CvmStatus::Failed => "failed",
            CvmStatus::Unknown(s) => s,
        }
    }

    /// The run state the status means; `None` when it means neither (a failure, an update
    /// of a stopped CVM, a status teeform does not know).
    pub fn power(&self) -> Option<Power> {
        match self {
            CvmStatus::Running | CvmStatus::Starting | CvmStatus::Restarting | CvmStatus::Booting => {
                Some(Power::Running)
            }
            CvmStatus::Stopped
            | CvmStatus::Stopping
            | CvmStatus::ShuttingDown
            | CvmStatus::Shutdown
            | CvmStatus::Exited => Some(Power::Stopped),
            CvmStatus::Updating | CvmStatus::Error | CvmStatus::Failed | CvmStatus::Unknown(_) => None,
        }
    }

    /// Whether the status says the CVM failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, CvmStatus::Error | CvmStatus::Failed)
    }
}

impl Default for CvmStatus {
    fn default() -> Self {
        CvmStatus::Unknown("unknown".into())
    }
}

impl std::fmt::Display for CvmStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for CvmStatus {
    fn from(s: &str) -> CvmStatus {
        CvmStatus::parse(s)
    }
}

impl Serialize for CvmStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CvmStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(CvmStatus::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_and_write_as_the_api_writes_them() {
        for s in CvmStatus::KNOWN {
            assert_eq!(CvmStatus::parse(s.as_str()), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(serde_json::from_value::<CvmStatus>(s.as_str().into()).unwrap(), *s);
        }
        let new = CvmStatus::parse("hibernating");
        assert_eq!(new, CvmStatus::Unknown("hibernating".into()));
        assert_eq!(new.to_string(), "hibernating");
        assert_eq!(serde_json::to_value(&new).unwrap(), "hibernating");
    }

    #[test]
    fn statuses_map_to_a_run_state_or_none() {
        let cases = [
            ("running", Some(Power::Running)),
            ("booting", Some(Power::Running)),
            ("stopped", Some(Power::Stopped)),
            ("exited", Some(Power::Stopped)),
            ("error", None),
            ("updating", None),
            ("hibernating", None),
        ];
        for (s, want) in cases {
            assert_eq!(CvmStatus::parse(s).power(), want, "{s}");
        }
        for p in [Power::Running, Power::Stopped] {
            assert_eq!(p.status().power(), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
