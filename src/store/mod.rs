//! Events, deliveries and attempts in PostgreSQL.
