//! `walhook.settings`: runtime settings with their defaults (PRODUCT.md 3.2).
//! Values are validated by the database when written; this reads them.

use std::time::Duration;

use tokio_postgres::Client;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub allow_insecure_targets: bool,
    pub event_retention: Duration,
    pub attempt_retention: Duration,
    pub max_payload_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_insecure_targets: false,
            event_retention: Duration::from_secs(7 * 86_400),
            attempt_retention: Duration::from_secs(30 * 86_400),
            max_payload_bytes: 1_048_576,
        }
    }
}

/// Read the settings; absent keys keep their defaults.
pub async fn load(client: &Client) -> Result<Settings, tokio_postgres::Error> {
    let mut settings = Settings::default();
    let rows = client
        .query(
            "SELECT key, value,
                    CASE WHEN key IN ('event_retention', 'attempt_retention')
                         THEN extract(epoch FROM value::interval)::float8 END
               FROM walhook.settings",
            &[],
        )
        .await?;
    for row in rows {
        let key: &str = row.get(0);
        let value: &str = row.get(1);
        let secs: Option<f64> = row.get(2);
        match key {
            "allow_insecure_targets" => settings.allow_insecure_targets = value == "true",
            "event_retention" => {
                settings.event_retention = Duration::from_secs_f64(secs.unwrap_or(0.0).max(0.0))
            }
            "attempt_retention" => {
                settings.attempt_retention = Duration::from_secs_f64(secs.unwrap_or(0.0).max(0.0))
            }
            "max_payload_bytes" => {
                if let Ok(v) = value.parse() {
                    settings.max_payload_bytes = v;
                }
            }
            _ => {}
        }
    }
    Ok(settings)
}
