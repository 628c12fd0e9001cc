# redeemd on Debian bookworm: build stage with the -dev packages, slim runtime stage.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config libevent-dev libhiredis-dev libjansson-dev \
        libpq-dev libcmocka-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY common common
COPY daemon daemon
COPY include include
COPY console console
COPY docs/openapi.json docs/openapi.json
COPY scripts scripts
COPY tests/unit tests/unit
COPY tests/fuzz tests/fuzz
COPY bench bench
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON \
    && cmake --build /build -j"$(nproc)" && ctest --test-dir /build -L unit --output-on-failure

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libevent-openssl-2.1-7 libssl3 \
        libhiredis0.14 libjansson4 libpq5 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --no-create-home redeemd
COPY --from=build /build/redeemd /build/redeemctl /usr/local/bin/
COPY scripts/sql /usr/share/redeemd/sql
COPY scripts/docker/entrypoint.sh /usr/local/bin/redeemd-entrypoint
USER redeemd
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/redeemd-entrypoint"]
