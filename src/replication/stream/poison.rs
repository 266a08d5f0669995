//! Poison messages: the slot replays the same bytes after every reconnect, so
//! a message that fails every session would make walhook retry forever. The
//! failure streak counts sessions that failed on the same message and stops
//! walhook after a few, saying how to inspect or skip it.

use super::super::lsn::Lsn;
use super::StreamError;
use crate::telemetry;

/// A message that failed this many sessions in a row stops walhook: the slot
/// replays the same bytes after every reconnect, so retrying cannot help.
pub const MAX_IDENTICAL_FAILURES: u32 = 5;

/// The stream keeps failing on one message: walhook stops.
#[derive(Debug, thiserror::Error)]
#[error(
    "the replication stream failed {failures} times in a row on the message at {lsn} \
     (table {table}): {error}. walhook stops instead of retrying forever and confirms \
     nothing past it; inspect the message with pg_logical_slot_peek_binary_changes, \
     upgrade walhook or report it with the LSN; only advancing the slot past {lsn} \
     (pg_replication_slot_advance) skips it, losing its events"
)]
pub struct PoisonMessage {
    pub lsn: Lsn,
    pub table: String,
    pub failures: u32,
    pub error: String,
}

/// Counts consecutive session failures on the same message (same position,
/// same error). Any other outcome starts a new count.
#[derive(Debug, Default)]
pub struct FailureStreak {
    last: Option<(Lsn, String)>,
    count: u32,
}

impl FailureStreak {
    /// Record the error that ended a session; the [`PoisonMessage`] when the
    /// same message has now failed [`MAX_IDENTICAL_FAILURES`] times (counted
    /// in `walhook_replication_poison_messages_total`).
    pub fn record(&mut self, error: &StreamError) -> Option<PoisonMessage> {
        let Some((lsn, table)) = error.bad_message() else {
            self.reset();
            return None;
        };
        let key = (lsn, error.to_string());
        if self.last.as_ref() == Some(&key) {
            self.count += 1;
        } else {
            self.last = Some(key);
            self.count = 1;
        }
        if self.count < MAX_IDENTICAL_FAILURES {
            return None;
        }
        let table = table.unwrap_or("unknown").to_owned();
        telemetry::REPLICATION_POISON_MESSAGES
            .with_label_values(&[&table])
            .inc();
        Some(PoisonMessage {
            lsn,
            table,
            failures: self.count,
            error: error.to_string(),
        })
    }

    /// A session streamed or failed for another reason.
    pub fn reset(&mut self) {
        self.last = None;
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::pgoutput;

    fn decode_error(lsn: u64) -> StreamError {
        StreamError::Decode {
            lsn: Lsn(lsn),
            table: Some("public.remote".into()),
            source: pgoutput::decode(&bytes::Bytes::from_static(b"Zhello")).unwrap_err(),
        }
    }

    #[test]
    fn the_same_bad_message_stops_after_a_few_failures() {
        let metric = || {
            telemetry::REPLICATION_POISON_MESSAGES
                .with_label_values(&["public.remote"])
                .get()
        };
        let before = metric();
        let mut streak = FailureStreak::default();
        for _ in 1..MAX_IDENTICAL_FAILURES {
            assert!(streak.record(&decode_error(0x3000_0000)).is_none());
        }
        let poison = streak.record(&decode_error(0x3000_0000)).expect("stops");
        assert_eq!(poison.lsn, Lsn(0x3000_0000));
        let text = poison.to_string();
        assert!(text.contains("0/30000000"), "{text}");
        assert!(text.contains("table public.remote"), "{text}");
        assert_eq!(metric(), before + 1);
    }

    #[test]
    fn other_failures_start_a_new_count() {
        let mut streak = FailureStreak::default();
        for i in 0..2 * MAX_IDENTICAL_FAILURES {
            // alternating positions never add up
            assert!(
                streak
                    .record(&decode_error(0x100 + u64::from(i % 2)))
                    .is_none()
            );
        }
        for _ in 1..MAX_IDENTICAL_FAILURES {
            assert!(streak.record(&decode_error(0x200)).is_none());
        }
        assert!(streak.record(&StreamError::Closed).is_none());
        assert!(
            streak.record(&decode_error(0x200)).is_none(),
            "reset by another error"
        );
    }
}
