# One image recipe for the four EXAI services (they share one Python package, built from
# the repo's pyproject.toml); docker-compose.yml builds it once per service with
#   SERVICE  the module run by `python -m` (ws_gateway, provider_proxy, storage_adapter,
#            llm_simulator)
#   PORT     the port it listens on, used by EXPOSE and the HEALTHCHECK
# The layers before the per-service ARGs are identical, so the four builds share them.
#
# Build context: the repo root (docker compose build, or
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=ws_gateway \
#     --build-arg PORT=8079 .)
# deploy/docker/service.Dockerfile.dockerignore keeps the context small.
#
# No `# syntax=` line: it would make BuildKit pull a frontend image, and the built-in
# Dockerfile frontend has everything used here. PYTHON_IMAGE picks the base (compose passes
# EXAI_PYTHON_IMAGE; deploy/docker/images.sh a Debian base made without a registry). Where
# TLS to PyPI is intercepted, pass the CA bundle as a build secret, which is mounted for
# the one pip step and is in no layer:  --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/exai
WORKDIR /src
# Dependencies first: they change less often than the code.
COPY pyproject.toml ./
COPY services/ ./services/
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/exai/bin/pip install --no-compile . \
    && /opt/exai/bin/python -m compileall -q /opt/exai/lib

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 exai \
    && useradd --system --uid 10001 --gid exai --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin exai \
    && mkdir -p /app/var \
    && chown exai:exai /app/var
COPY --from=build /opt/exai /opt/exai
COPY deploy/docker/healthcheck.py /opt/exai/healthcheck.py

ARG SERVICE
ARG PORT
# EXAI_HOST: inside a container the service must listen on all interfaces; compose
# publishes only the gateway, on 127.0.0.1.
ENV PATH=/opt/exai/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EXAI_HOST=0.0.0.0 \
    EXAI_SERVICE_MODULE=${SERVICE} \
    EXAI_HEALTH_PORT=${PORT}
WORKDIR /app
USER exai:exai
EXPOSE ${PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/opt/exai/healthcheck.py"]
# exec: the service is PID 1's only child-free process and gets SIGTERM directly (it
# drains and flushes telemetry on SIGTERM).
CMD ["sh", "-c", "exec python -m \"$EXAI_SERVICE_MODULE\""]
