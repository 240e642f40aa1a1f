# Kabinet gateway image: `kabinet serve` by default; the same image runs `kabinet migrate`.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Installed into a virtualenv so the runtime stage copies one directory and no build context.
RUN python -m venv /opt/kabinet
WORKDIR /src
COPY . .
RUN /opt/kabinet/bin/pip install .


FROM python:3.11-slim

ENV PATH=/opt/kabinet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KABINET_HOST=0.0.0.0 \
    KABINET_PORT=8000

RUN groupadd --system --gid 10001 kabinet \
    && useradd --system --uid 10001 --gid kabinet --home-dir /home/kabinet --create-home \
        --shell /usr/sbin/nologin kabinet

COPY --from=build /opt/kabinet /opt/kabinet

USER 10001:10001
WORKDIR /home/kabinet
EXPOSE 8000

# The slim image has no curl; the standard library makes the probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('KABINET_PORT', '8000')}/health/ready\", timeout=4)"]

CMD ["kabinet", "serve"]
