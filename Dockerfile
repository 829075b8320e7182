# Build: docker build -t github-backup-scheduler .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin github-backup-scheduler

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/github-backup-scheduler /usr/local/bin/
ENV GHBS_DATA_DIR=/data GHBS_LISTEN=0.0.0.0:3000
VOLUME /data
EXPOSE 3000
ENTRYPOINT ["github-backup-scheduler"]
CMD ["server"]
