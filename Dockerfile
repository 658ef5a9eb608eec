# syntax=docker/dockerfile:1
# vigil's container image: built with the Rust toolchain the crate requires, shipped on a minimal glibc base
# (no shell, no package manager). TLS is rustls, so there is no OpenSSL to carry.
#   docker build -t vigil .
# Builder and final image share a Debian release (trixie), so the binary finds the glibc it was linked against.

FROM rust:1.95-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vigil \
 && cp target/release/vigil /usr/local/bin/vigil

FROM gcr.io/distroless/cc-debian13
COPY --from=build /usr/local/bin/vigil /usr/local/bin/vigil
# Non-root unless told otherwise; the Helm chart runs it as UID 0 (with no capabilities) to read the API server's
# root-owned 0600 audit log.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["run"]
