//! Authentication of the replication connection: trust, cleartext, md5 and
//! SCRAM-SHA-256 (postgres-protocol's), and the server's refusals reworded
//! for the operator (wrong password, no REPLICATION, pg_hba.conf).

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio_postgres::error::SqlState;

use super::error::{ConnError, server_error};
use super::quote_ident;
use super::wire::Wire;

/// Answer the server's authentication requests until AuthenticationOk.
pub(super) async fn authenticate(
    wire: &mut Wire,
    user: &str,
    password: Option<&[u8]>,
) -> Result<(), ConnError> {
    let need_password = || {
        ConnError::Auth(format!(
            "the server asks a password for user {user}: put it in --database-url"
        ))
    };
    loop {
        match wire.next("during authentication").await? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let password = password.ok_or_else(need_password)?;
                frontend::password_message(password, &mut wire.write)?;
                wire.flush().await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let password = password.ok_or_else(need_password)?;
                let hash = md5_hash(user.as_bytes(), password, body.salt());
                frontend::password_message(hash.as_bytes(), &mut wire.write)?;
                wire.flush().await?;
            }
            Message::AuthenticationSasl(body) => {
                let password = password.ok_or_else(need_password)?;
                let offers_scram = body
                    .mechanisms()
                    .any(|m| Ok(m == SCRAM_SHA_256))
                    .map_err(|e| ConnError::Protocol(format!("malformed SASL mechanisms: {e}")))?;
                if !offers_scram {
                    return Err(ConnError::Auth(
                        "the server offers no SASL mechanism walhook supports (SCRAM-SHA-256)"
                            .into(),
                    ));
                }
                scram(wire, password, user).await?;
            }
            Message::ErrorResponse(body) => {
                return Err(auth_error(user, server_error(body.fields())));
            }
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationSspi => {
                return Err(ConnError::Auth(format!(
                    "unsupported authentication method for user {user}: \
                     use trust, md5, password or scram-sha-256 in pg_hba.conf"
                )));
            }
            _ => {
                return Err(ConnError::Protocol(
                    "unexpected message during authentication".into(),
                ));
            }
        }
    }
}

async fn scram(wire: &mut Wire, password: &[u8], user: &str) -> Result<(), ConnError> {
    let mut scram = ScramSha256::new(password, ChannelBinding::unsupported());
    frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut wire.write)?;
    wire.flush().await?;
    let mut step = 0;
    loop {
        match wire.next("during SCRAM").await? {
            Message::AuthenticationSaslContinue(body) if step == 0 => {
                scram
                    .update(body.data())
                    .map_err(|e| ConnError::Auth(format!("SCRAM exchange failed: {e}")))?;
                frontend::sasl_response(scram.message(), &mut wire.write)?;
                wire.flush().await?;
                step = 1;
            }
            Message::AuthenticationSaslFinal(body) => {
                scram
                    .finish(body.data())
                    .map_err(|e| ConnError::Auth(format!("SCRAM server signature invalid: {e}")))?;
                return Ok(());
            }
            Message::ErrorResponse(body) => {
                return Err(auth_error(user, server_error(body.fields())));
            }
            _ => {
                return Err(ConnError::Protocol(
                    "unexpected message during SCRAM".into(),
                ));
            }
        }
    }
}

/// Authentication-phase errors, reworded for the operator.
pub(super) fn auth_error(user: &str, error: ConnError) -> ConnError {
    let code = error.sqlstate().map(SqlState::from_code);
    match code {
        Some(SqlState::INVALID_PASSWORD) => ConnError::Auth(format!(
            "password authentication failed for user {user}: check the password in --database-url"
        )),
        // PostgreSQL 15: "must be superuser or replication role to start
        // walsender"; 16 and later: "permission denied to start WAL sender"
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
            if error.to_string().to_lowercase().contains("sender") =>
        {
            ConnError::Auth(format!(
                "role {user} lacks the REPLICATION attribute, which the replication connection \
                 needs ({error}): as an administrator: ALTER ROLE {} REPLICATION (on Amazon \
                 RDS and Aurora: GRANT rds_replication TO {0}); see docs/least-privilege.md",
                quote_ident(user)
            ))
        }
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => ConnError::Auth(format!(
            "the server refused a replication connection for user {user} ({error}): \
             pg_hba.conf must let the user connect to the database (a logical replication \
             connection matches the database's lines, not `replication`) by password, \
             scram-sha-256, trust or cert (with sslcert and sslkey), and the role needs \
             REPLICATION"
        )),
        _ => error,
    }
}
