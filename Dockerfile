# syntax=docker/dockerfile:1
# Build stage. Dependencies are built first in their own layer (from Cargo.toml and Cargo.lock
# alone, with stub sources), so a change to src/ rebuilds only fxhook. SQLite is bundled.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/mapping.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Make sure cargo sees the real sources as newer than the stub build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked && strip target/release/fxhook

# Runtime stage: a small Debian with CA certificates and time zones, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/fxhook --create-home fxhook
COPY --from=build /src/target/release/fxhook /usr/local/bin/fxhook
COPY mappings /etc/fxhook/mappings
COPY fxhook.example.yaml /etc/fxhook/fxhook.example.yaml
WORKDIR /var/lib/fxhook
ENV FXHOOK__SERVER__LISTEN=0.0.0.0:8080 \
    FXHOOK__STORE__PATH=/var/lib/fxhook/fxhook.db \
    FXHOOK__MAPPINGS__DIR=/etc/fxhook/mappings \
    RUST_LOG=info
USER fxhook
VOLUME ["/var/lib/fxhook"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 CMD ["fxhook", "healthcheck"]
ENTRYPOINT ["fxhook"]
CMD ["serve"]
