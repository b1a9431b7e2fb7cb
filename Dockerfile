# syntax=docker/dockerfile:1
# One image for every Closeloop service: `docker run IMAGE journey` serves journey,
# `docker run IMAGE journey migrate` applies its migrations, `docker run IMAGE python -m ...` runs
# any other command (e.g. `python -m libs.common.bus.dlq replay --group G`).
#
# No HEALTHCHECK here: the port and the probe differ per service and a `migrate` one-shot has none.
# docker-compose.yml probes each service's /readyz; Kubernetes probes /healthz and /readyz
# (deploy/k8s/base). See docs/operations.md.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Build tools live only in this stage: they compile a dependency that has no wheel for the platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /build
COPY pyproject.toml ./
# The runtime pins from pyproject.toml, without the dev extras and without the project itself:
# the source is copied as files, so alembic finds each service's migrations/ beside its code.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install --requirement requirements.txt
COPY libs/ /app/libs/
COPY services/ /app/services/
# Beside the source, where GET / reads the version from (libs/common/version.py).
COPY pyproject.toml /app/pyproject.toml
COPY deploy/docker/entrypoint.sh /app/entrypoint.sh
# Compiled now: the root filesystem is read-only at run time.
RUN /opt/venv/bin/python -m compileall -q /app/libs /app/services

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 closeloop \
    && useradd --system --uid 10001 --gid closeloop --no-create-home --shell /usr/sbin/nologin closeloop
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=root:root /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CLOSELOOP_HTTP_HOST=0.0.0.0 \
    CLOSELOOP_ENVIRONMENT=production
WORKDIR /app
USER 10001:10001
EXPOSE 8101 8102 8103 8104 8105 8106 8107
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["--help"]
