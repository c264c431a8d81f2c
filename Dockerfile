# PetStore Saga: one image for every daemon and tool; the command picks the binary:
#   storefront | inventory | payment | order-saga | audit | outbox-relay   (the daemons)
#   dlq | petstore-saga                                                   (the operators' tools)
# Configuration comes from the environment only (README.md, "Configuration"); see compose.yaml
# and runbook/k8s/. The migrations are compiled into the binaries (`NAME --migrate` applies
# them), so the image needs no other file.
#
#   docker build -t petstore:latest .

# ---------------------------------------------------------------- build
FROM debian:12 AS build
# The C build dependencies of the launcher's PACKAGES list (libssl-dev: the TLS client code
# links OpenSSL directly).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config librabbitmq-dev libpq-dev libjansson-dev \
        libmicrohttpd-dev libsodium-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads: the test suites stay out (PETSTORE_TESTS=OFF), except the bench's
# load generator, which the top-level CMakeLists.txt always builds.
COPY CMakeLists.txt ./
COPY contracts contracts
COPY services services
COPY saga saga
COPY outbox outbox
COPY tests/bench tests/bench
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DPETSTORE_TESTS=OFF \
    && cmake --build /build -j"$(nproc)"

# ---------------------------------------------------------------- runtime
FROM debian:12-slim
# Runtime libraries only; curl for the healthchecks (curl -fsS http://127.0.0.1:PORT/readyz).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        librabbitmq4 libpq5 libjansson4 libmicrohttpd12 libsodium23 libssl3 \
        ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin petstore
# Every binary of the launcher's PROCESS_TABLE and TOOL_TABLE.
COPY --from=build \
    /build/services/storefront/storefront \
    /build/services/inventory/inventory \
    /build/services/payment/payment \
    /build/saga/order-saga \
    /build/services/audit/audit \
    /build/outbox/outbox-relay \
    /build/bin/dlq \
    /build/bin/petstore-saga \
    /usr/local/bin/
# A numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# storefront 8080, inventory 8081, payment 8082, order-saga 8083, audit 8084, relays 8091-8094
# (health, metrics and the APIs; every daemon's HTTP_PORT is set by its deployment).
EXPOSE 8080 8081 8082 8083 8084 8091 8092 8093 8094
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "echo 'petstore: name the program to run: storefront, inventory, payment, order-saga, audit, outbox-relay, dlq or petstore-saga' >&2; exit 64"]
