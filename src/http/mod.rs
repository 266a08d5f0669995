//! The daemon's HTTP endpoints: /metrics, /.well-known/jwks.json, /healthz, /readyz.
