# syntax=docker/dockerfile:1
# Production image: `publisher serve` on the bundled example notebooks, as a non-root user.
#   docker build -t publisher .
#   docker run --init -p 8080:8080 publisher
# Mount your own notebooks over /app/notebooks (read-only is fine) to publish them instead.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies and package first, so editing a notebook does not reinstall them.
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY publisher/ ./publisher/
RUN pip install --no-cache-dir -c constraints.txt . \
    && rm -rf /src

# The server runs as an unprivileged user; the kernels it starts inherit that user.
# It needs a home (Jupyter writes kernel connection files under ~/.local/share/jupyter)
# and a writable cache folder; everything else stays read-only to it.
RUN groupadd --system --gid 10001 publisher \
    && useradd --system --uid 10001 --gid publisher --create-home --home-dir /home/publisher \
        --shell /usr/sbin/nologin publisher \
    && install -d -o publisher -g publisher -m 0750 /var/cache/publisher

WORKDIR /app
COPY notebooks/ /app/notebooks/

ENV PUBLISHER_HOST=0.0.0.0 \
    PUBLISHER_CACHE_DIR=/var/cache/publisher \
    MPLCONFIGDIR=/tmp/matplotlib

# Numeric, so a runtime that checks runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001

EXPOSE 8080

# /healthz answers 200 when healthy and 503 otherwise; urlopen raises on 503, so the
# probe exits non-zero. Kernels warm up at start, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# Exec form: `publisher` gets SIGTERM itself and drains in-flight renders before exiting
# (allow it --timeout + 5 s: `docker stop -t 40`). Run with --init (compose: `init: true`)
# so that processes orphaned by kernels are reaped.
ENTRYPOINT ["publisher"]
CMD ["serve", "/app/notebooks", "--port", "8080"]
