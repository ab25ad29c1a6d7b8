# tether container image.
#
#   docker build -t tether .
#   docker run -p 8080:8080 -v $PWD/tether.yaml:/etc/tether/tether.yaml:ro tether
#
# Two stages on Debian 12 (bookworm). Packages come from tools/packages.txt, the list the
# README's commands install: section `build` here, section `runtime` in the final stage
# (tools/packages.sh prints a section; tests/integration/test_dockerfile.py checks the
# list covers what the binaries link). The final stage is bookworm-slim with the two
# binaries, runs as the unprivileged user `tether` (uid 10001, numeric
# so that Kubernetes' runAsNonRoot can verify it), and starts tether as PID 1 (exec form,
# no shell): SIGTERM drains and stops within timeouts.shutdown, SIGHUP reloads the config.
# Config: /etc/tether/tether.yaml (mount yours there; relative paths in it are relative to
# /etc/tether). Admin endpoints on 9901 (HEALTHCHECK uses /healthz): the config must bind
# admin.address to 0.0.0.0:9901 for other containers or probes to reach it.

FROM debian:bookworm AS build
WORKDIR /src
COPY tools/packages.txt tools/packages.sh tools/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(sh tools/packages.sh build) \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTETHER_TESTS=OFF -DTETHER_BENCH=OFF \
 && cmake --build build -j"$(nproc)" --target tether tether-from-nginx \
 && strip build/tether build/tools/tether-from-nginx

FROM debian:bookworm-slim
COPY tools/packages.txt tools/packages.sh /tmp/packages/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(sh /tmp/packages/packages.sh runtime) \
 && rm -rf /var/lib/apt/lists/* /tmp/packages \
 && groupadd --system --gid 10001 tether \
 && useradd --system --uid 10001 --gid tether --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin tether \
 && mkdir -p /etc/tether
COPY --from=build /src/build/tether /src/build/tools/tether-from-nginx /usr/local/bin/
COPY conf/examples/docker/tether.yaml /etc/tether/tether.yaml
USER 10001:10001
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9901/healthz"]
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["-c", "/etc/tether/tether.yaml"]
