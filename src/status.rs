//! `walhook status`: what an operator asks first — is the slot streaming, how far
//! behind is it, what it costs the server (WAL retained, how close to being
//! invalidated), what happened in the last hour, and which receivers are failing.

//!
//! The figures come from the store ([`collect`]); this module renders them.
//! Endpoint health (subscriptions failing or disabled by their breaker, with
//! since when and their last error) comes from `walhook.subscription_health`.

use std::fmt::Write;

use serde::Serialize;
use tokio_postgres::Client;

pub use crate::store::health::Unhealthy;
pub use crate::store::monitor::{
    FailingSubscription, RETAINED_WAL_WARN_BYTES, SlotStatus, StatusReport, bytes,
};

/// The status report with endpoint health.
#[derive(Debug, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub report: StatusReport,
    /// Subscriptions failing or disabled by their endpoint health.
    pub endpoint_health: Vec<Unhealthy>,
}

/// Everything `walhook status` shows.
pub async fn collect(client: &Client, slot: &str) -> Result<Status, tokio_postgres::Error> {
    Ok(Status {
        report: crate::store::monitor::collect(client, slot).await?,
        endpoint_health: crate::store::health::unhealthy(client).await?,
    })
}

impl Status {
    /// A readable table.
    pub fn render(&self) -> String {
        let mut out = self.report.render();
        let _ = writeln!(out, "\nendpoint health (failing or disabled subscriptions)");
        if self.endpoint_health.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for h in &self.endpoint_health {
            let since = h.since.map_or("-".into(), |t| t.to_rfc3339());
            let _ = write!(
                out,
                "  {} {} ({}): {} since {since}, {} consecutive failures; last error: {}",
                h.id,
                h.name.as_deref().unwrap_or(""),
                h.url,
                h.state.as_str(),
                h.consecutive_failures,
                h.last_error.as_deref().unwrap_or("-")
            );
            if let Some(next) = h.next_probe_at {
                let _ = write!(out, "; next probe {}", next.to_rfc3339());
            }
            if let Some(reason) = &h.disabled_reason {
                let _ = write!(out, "; disabled: {reason}");
            }
            let _ = writeln!(out);
        }
        out
    }
}

impl StatusReport {
    /// A readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.slot;
        let _ = writeln!(out, "slot {}", s.name);
        if !s.exists && s.recorded_confirmed_lsn.is_none() {
            let _ = writeln!(out, "  not created yet (walhook run creates it)");
        } else if !s.exists {
            let _ = writeln!(out, "  missing");
        } else {
            let _ = writeln!(
                out,
                "  active         {}",
                if s.active { "yes" } else { "no" }
            );
            let _ = writeln!(
                out,
                "  confirmed at   {}",
                s.confirmed_flush_lsn.as_deref().unwrap_or("-")
            );
            let _ = writeln!(
                out,
                "  lag            {} bytes, {}",
                s.lag_bytes.map_or("-".into(), |b| b.to_string()),
                s.lag_seconds.map_or("- s".into(), |l| format!("{l:.3} s"))
            );
            let _ = writeln!(
                out,
                "  WAL retained   {} (from restart_lsn; warning above {})",
                s.retained_wal_bytes.map_or("-".into(), bytes),
                bytes(RETAINED_WAL_WARN_BYTES)
            );
            let _ = writeln!(
                out,
                "  wal_status     {}, safe_wal_size {} (max_slot_wal_keep_size {})",
                s.wal_status.as_deref().unwrap_or("-"),
                s.safe_wal_size.map_or("unlimited".into(), bytes),
                s.max_slot_wal_keep_size.as_deref().unwrap_or("-")
            );
            if let Some(failover) = s.failover {
                let _ = writeln!(
                    out,
                    "  failover       {}{}",
                    if failover { "yes" } else { "no" },
                    failover_detail(s)
                );
            }
        }
        if let Some(recorded) = &s.recorded_confirmed_lsn {
            let _ = writeln!(
                out,
                "  walhook's record: confirmed up to {recorded}; re-created {} times, {} of WAL declared lost",
                s.recreations,
                bytes(s.lost_wal_bytes)
            );
        }
        for warning in &s.warnings {
            let _ = writeln!(out, "  WARNING: {warning}");
        }
        let _ = writeln!(out, "\nevents in the last hour");
        table(&mut out, &self.events_last_hour);
        let _ = writeln!(out, "\ndeliveries in the last hour");
        table(&mut out, &self.deliveries_last_hour);
        let _ = writeln!(out, "  pending now: {}", self.pending_deliveries);
        let _ = writeln!(
            out,
            "  in memory, no row yet: {} (owed by stored events from the mark {})",
            self.owed_without_row,
            self.delivery_mark.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            out,
            "  deferred, no row yet: {} (slow or failing subscriptions' backlog, in walhook.deferrals)",
            self.deferred_without_row
        );
        let _ = writeln!(out, "\nfailing subscriptions");
        if self.failing_subscriptions.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for f in &self.failing_subscriptions {
            let _ = writeln!(
                out,
                "  {} {} ({}): {} failed, {} retrying; last error: {}",
                f.id,
                f.name.as_deref().unwrap_or(""),
                f.url,
                f.failed,
                f.retrying,
                f.last_error.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(
            out,
            "\nbackfills (unfinished, or finished in the last hour)"
        );
        if self.backfills.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for b in &self.backfills {
            let _ = writeln!(
                out,
                "  {} {} -> subscription {}{}",
                b.id,
                crate::backfill::progress::progress_line(b),
                b.subscription_id,
                b.error
                    .as_deref()
                    .map_or(String::new(), |e| format!("; error: {e}"))
            );
        }
        out
    }
}

/// Whether a failover slot is kept in step with a standby, as far as this
/// server can tell.
fn failover_detail(s: &SlotStatus) -> String {
    if s.synced == Some(true) {
        return " (this is a standby's synchronised copy)".to_owned();
    }
    if s.failover != Some(true) {
        return " (--slot-failover makes it one, for standbys with sync_replication_slots = on)"
            .to_owned();
    }
    match s.synchronized_standby_slots.as_deref() {
        Some(slots) if !slots.is_empty() => {
            format!(
                " (synchronised: changes reach walhook only once the standbys of '{slots}' have them)"
            )
        }
        _ => " (not synchronised: synchronized_standby_slots is empty)".to_owned(),
    }
}

fn table(out: &mut String, rows: &[(String, i64)]) {
    if rows.is_empty() {
        let _ = writeln!(out, "  none");
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (name, count) in rows {
        let _ = writeln!(out, "  {name:<width$}  {count:>8}");
    }
}
