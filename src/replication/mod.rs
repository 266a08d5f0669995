//! WAL -> decoded changes: the replication connection, the pgoutput decoder,
//! typed values and the slot loop.
pub mod change;
pub mod conn;
pub mod lsn;
pub mod pgoutput;
pub mod protocol;
pub mod slot;
pub mod stream;
pub mod values;
