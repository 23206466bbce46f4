# syntax=docker/dockerfile:1
# The gateway as one image: `gateway serve` by default; `gateway worker`, `gateway sandbox` and
# `gateway db upgrade` run from the same image with another command.

# ---- builder: wheels of the project and every dependency, so the runtime needs no compiler
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels .

# ---- runtime
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    GATEWAY_HOST=0.0.0.0

# Bind-mounted rather than copied, so the wheels do not stay in a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl

# A fixed uid, so a volume's ownership means the same on every host.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway \
    && mkdir -p /app/var \
    && chown -R gateway:gateway /app

WORKDIR /app
# The default SQLite database lives under ./var/; declared after the chown, which a volume keeps.
VOLUME /app/var
EXPOSE 8080
USER gateway

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('GATEWAY_PORT', '8080'), timeout=4)"]

CMD ["gateway", "serve"]
