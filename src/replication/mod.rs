//! WAL -> decoded changes: the replication connection, the pgoutput decoder,
//! typed values and the slot loop.
pub(crate) mod change;
pub(crate) mod conn;
pub(crate) mod lsn;
pub mod pgoutput;
pub(crate) mod protocol;
pub(crate) mod row;
pub(crate) mod slot;
pub(crate) mod stream;
pub mod values;
