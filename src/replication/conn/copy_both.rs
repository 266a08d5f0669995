//! The connection in CopyBoth mode, after `START_REPLICATION`: CopyData
//! frames in (XLogData and keepalives, parsed by [`crate::replication::protocol`]),
//! Standby Status Updates out.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use super::error::{ConnError, server_error};
use super::wire::Wire;
use crate::replication::lsn::Lsn;
use crate::replication::protocol::{self, ReplicationMessage};

/// The connection in CopyBoth mode: replication messages in, status out.
pub struct ReplicationStream {
    pub(super) wire: Wire,
    pub(super) status: BytesMut,
}

impl ReplicationStream {
    /// The next replication message; `None` when the server ended the copy.
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, ConnError> {
        loop {
            match self.wire.next("in the replication stream").await? {
                Message::CopyData(body) => {
                    return protocol::parse_copy_data(body.into_bytes())
                        .map(Some)
                        .map_err(|e| ConnError::Protocol(e.to_string()));
                }
                Message::CopyDone => return Ok(None),
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                Message::NoticeResponse(_) | Message::ParameterStatus(_) => {}
                _ => {
                    return Err(ConnError::Protocol(
                        "unexpected message in the replication stream".into(),
                    ));
                }
            }
        }
    }

    /// Send a Standby Status Update.
    pub async fn send_status(
        &mut self,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
        reply_requested: bool,
    ) -> Result<(), ConnError> {
        let payload = protocol::encode_standby_status(
            written,
            flushed,
            applied,
            protocol::pg_epoch_micros_now(),
            reply_requested,
        );
        self.status.clear();
        frontend::CopyData::new(&payload[..])?.write(&mut self.status);
        self.wire.socket.write_all(&self.status).await?;
        self.wire.socket.flush().await?;
        Ok(())
    }
}
