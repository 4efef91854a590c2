//! What commands share, so that no command file imports another: opening a run
//! ([`session`]), refreshing state ([`refresh`]), making a plan ([`planning`]), carrying it
//! out ([`execute`]), data sources and their catalogs ([`datasources`], [`catalogs`]),
//! on-chain KMS ([`onchain`]), saved plan files ([`saved`]), state as shown to people
//! ([`records`]), the JSON event stream ([`stream`]) and what attestations are verified with
//! ([`verifying`]).

pub mod catalogs;
pub mod datasources;
pub mod execute;
pub mod onchain;
pub mod planning;
pub mod records;
pub mod refresh;
pub mod saved;
pub mod session;
pub mod stream;
pub mod verifying;
