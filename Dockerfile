# tether container image. Build stage installs the same package list as the
# README's commands (tools/packages.txt); the runtime stage is slim and runs
# tether as an unprivileged user, as PID 1 (it handles SIGTERM and SIGHUP).
# Config path: /etc/tether/tether.yaml (mount yours there).
FROM debian:bookworm AS build
WORKDIR /src
COPY tools/packages.txt tools/packages.txt
RUN apt-get update \
 && grep -v '^#' tools/packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTETHER_TESTS=OFF -DTETHER_BENCH=OFF \
 && cmake --build build -j"$(nproc)" --target tether tether-demo-backend

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libyaml-cpp0.7 libhiredis0.14 \
      libboost-system1.81.0 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin tether
COPY --from=build /src/build/tether /usr/local/bin/tether
COPY conf/tether.yaml /etc/tether/tether.yaml
USER tether
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=2s CMD curl -fsS http://127.0.0.1:9901/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["-c", "/etc/tether/tether.yaml"]
