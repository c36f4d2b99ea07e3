# Multi-stage build: a static-ish release binary on a distroless, non-root base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
COPY charts ./charts
RUN cargo build --release --locked --bin kms-alias-operator --bin kms-emulator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kms-alias-operator /usr/local/bin/kms-alias-operator
COPY --from=build /src/target/release/kms-emulator /usr/local/bin/kms-emulator
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kms-alias-operator"]
CMD ["run"]
