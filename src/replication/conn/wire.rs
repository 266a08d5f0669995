//! Framing: backend messages cut out of one read buffer (parsed by
//! postgres-protocol, plus the CopyBothResponse it does not know), frontend
//! messages written to one write buffer. Shared by the command phase and the
//! CopyBoth stream.

use bytes::{Buf, BytesMut};
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::ConnError;
use super::socket::Socket;

/// Largest backend message accepted (PostgreSQL's own limit is 1 GiB).
const MAX_FRAME: usize = 1 << 30;

/// Buffered framing over the socket, shared by both connection phases.
pub(super) struct Wire {
    pub(super) socket: Box<dyn Socket>,
    pub(super) read: BytesMut,
    pub(super) write: BytesMut,
}

/// One backend message. postgres-protocol parses everything but
/// CopyBothResponse, which tokio-postgres never needs and so the crate does not
/// know; that one is recognised here by its tag.
pub(super) enum Backend {
    CopyBothResponse,
    Message(Message),
}

impl Wire {
    pub(super) async fn flush(&mut self) -> Result<(), ConnError> {
        self.socket.write_all(&self.write).await?;
        self.socket.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next backend message. A CopyData body is a slice of the read
    /// buffer, not a copy.
    pub(super) async fn message(&mut self) -> Result<Backend, ConnError> {
        loop {
            if self.read.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]])
                        as usize;
                if !(4..=MAX_FRAME).contains(&len) {
                    return Err(ConnError::Protocol(format!("invalid message length {len}")));
                }
                if self.read[0] == b'W' && self.read.len() > len {
                    self.read.advance(len + 1);
                    return Ok(Backend::CopyBothResponse);
                }
            }
            let parsed = Message::parse(&mut self.read)
                .map_err(|e| ConnError::Protocol(format!("malformed backend message: {e}")))?;
            if let Some(message) = parsed {
                return Ok(Backend::Message(message));
            }
            if self.read.capacity() - self.read.len() < 8192 {
                self.read.reserve(64 * 1024);
            }
            if self.socket.read_buf(&mut self.read).await? == 0 {
                return Err(ConnError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
        }
    }

    /// The next message of a phase that never sees CopyBothResponse.
    pub(super) async fn next(&mut self, phase: &str) -> Result<Message, ConnError> {
        match self.message().await? {
            Backend::Message(message) => Ok(message),
            Backend::CopyBothResponse => Err(ConnError::Protocol(format!(
                "unexpected CopyBothResponse {phase}"
            ))),
        }
    }
}

/// A backend message from its tag and body, parsed by postgres-protocol
/// (for unit tests of what reads messages).
#[cfg(test)]
pub(super) fn parse_message(tag: u8, body: &[u8]) -> Result<Message, std::io::Error> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[tag]);
    buf.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    buf.extend_from_slice(body);
    Ok(Message::parse(&mut buf)?.expect("a whole message"))
}
