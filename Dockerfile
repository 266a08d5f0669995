# syntax=docker/dockerfile:1
# walhook and the example receiver in one small image (used by docker-compose.yml).
#   docker build -t walhook .
#   docker run --rm -e WALHOOK_DATABASE_URL=postgres://... -p 9750:9750 walhook        # walhook run
#   docker run --rm --entrypoint receiver walhook --help                               # the receiver

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
COPY examples ./examples
# a workspace member (the benchmark): cargo reads its manifest, builds nothing of it
COPY bench/walhook-bench ./bench/walhook-bench
# The cache mounts keep the registry and target/ between builds, so the binaries
# are copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin walhook --example receiver \
    && mkdir -p /out \
    && cp target/release/walhook target/release/examples/receiver /out/

FROM debian:bookworm-slim
# ca-certificates: https webhook targets; postgresql-client: psql for the compose
# setup step; curl: the compose healthcheck on /readyz.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 walhook \
    && useradd --system --uid 10001 --gid walhook --no-create-home --shell /usr/sbin/nologin walhook
COPY --from=builder /out/walhook /usr/local/bin/walhook
COPY --from=builder /out/receiver /usr/local/bin/receiver
# the example directory schema and routes, for `psql -f` after `walhook migrate`
COPY sql/examples /opt/walhook/sql/examples
USER walhook:walhook
# Inside a container walhook must listen on all interfaces (its default is loopback).
ENV WALHOOK_HTTP_ADDR=0.0.0.0:9750
EXPOSE 9750
ENTRYPOINT ["walhook"]
CMD ["run"]
