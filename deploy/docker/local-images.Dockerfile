# Images for the compose stack on a machine that cannot pull from a registry, one stage
# each (`--target`), all on the Debian base that deploy/docker/images.sh makes with
# debootstrap. They stand in for the upstream images docker-compose.yml names by default
# and keep those images' contracts (entrypoint, user, data paths, environment), so the
# compose file runs them unchanged: images.sh tags them and .env points the
# EXAI_*_IMAGE variables at them.
#
# Build context: a staging folder images.sh fills with the Go binaries that `make tools`
# builds (bin/), and deploy/docker/postgres-entrypoint.sh.

ARG BASE_IMAGE=exai/bookworm:local

# ---------------------------------------------------------------------------- collector
# otel/opentelemetry-collector-contrib: /otelcol-contrib, user 10001, config in
# /etc/otelcol-contrib/. Ours has exactly the components otel-collector.yaml uses.
FROM ${BASE_IMAGE} AS otelcol
COPY bin/otelcol /otelcol-contrib
USER 10001:10001
EXPOSE 4317 4318 13133 8888
ENTRYPOINT ["/otelcol-contrib"]
CMD ["--config=/etc/otelcol-contrib/config.yaml"]

# ---------------------------------------------------------------------------- prometheus
# prom/prometheus: /bin/prometheus, user nobody, TSDB in /prometheus, wget for probes.
FROM ${BASE_IMAGE} AS prometheus
COPY bin/prometheus bin/promtool /bin/
RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

# ---------------------------------------------------------------------------- alertmanager
# prom/alertmanager: /bin/alertmanager, user nobody, state in /alertmanager.
FROM ${BASE_IMAGE} AS alertmanager
COPY bin/alertmanager bin/amtool /bin/
RUN mkdir -p /alertmanager /etc/alertmanager && chown nobody:nogroup /alertmanager
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]

# ---------------------------------------------------------------------------- jaeger
# jaegertracing/jaeger (v2): /cmd/jaeger/jaeger-linux, user 10001. Only the compose test
# uses it, in Tempo's place (tests/compose/override.yml).
FROM ${BASE_IMAGE} AS jaeger
COPY bin/jaeger /cmd/jaeger/jaeger-linux
USER 10001:10001
EXPOSE 4317 4318 16686
ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]

# ---------------------------------------------------------------------------- redis
# redis: `redis-server …` as the command, redis-cli for the healthcheck, user redis,
# /data. Like upstream's entrypoint, a `redis-server` command runs without protected
# mode (it would refuse every client from another container: there is no password).
FROM ${BASE_IMAGE} AS redis
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["sh", "-c", "if [ \"$1\" = redis-server ]; then shift; exec redis-server --protected-mode no \"$@\"; fi; exec \"$@\"", "redis"]
CMD ["redis-server"]

# ---------------------------------------------------------------------------- postgres
# postgres: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on first start, data in
# /var/lib/postgresql/data, pg_isready on the PATH. Debian's server (15) with a small
# entrypoint that keeps that contract.
FROM ${BASE_IMAGE} AS postgres
# No cluster from the package: the entrypoint makes one in $PGDATA on first start.
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/postgres \
       /usr/lib/postgresql/*/bin/pg_ctl /usr/local/bin/ \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
