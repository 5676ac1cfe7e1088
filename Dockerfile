# imgproxy: `docker build -t imgproxy .` then see docs/DOCKER.md.
# BASE is any Debian-like image with python3 (>= 3.11) and its venv module.
ARG BASE=python:3.12-slim

# Build: a venv in /opt/venv. Every dependency ships as a wheel (libvips comes
# inside pyvips-binary), so no compiler or -dev package is needed here either.
FROM ${BASE} AS build
WORKDIR /src
# Dependencies first, in their own layer: a code change reuses it.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY README.md ./
COPY imgproxy ./imgproxy
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

# Runtime: the base plus the venv; no pip, no sources, no build caches.
FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin imgproxy \
 && mkdir -p /data/originals /data/variants \
 && chown -R imgproxy:imgproxy /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config/presets.toml config/presets.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMGPROXY_ENV=production \
    IMGPROXY_HOST=0.0.0.0 \
    IMGPROXY_PORT=8080 \
    IMGPROXY_ORIGINALS=file:///data/originals \
    IMGPROXY_VARIANTS=file:///data/variants \
    IMGPROXY_PRESETS=/app/config/presets.toml \
    IMGPROXY_DEV_KEY_FILE=/data/dev-key
USER 10001:10001
VOLUME ["/data/originals", "/data/variants"]
EXPOSE 8080
# /healthz renders a tiny PNG through libvips; no curl in the image, so python asks.
HEALTHCHECK --interval=30s --timeout=6s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('IMGPROXY_PORT', '8080'), timeout=5)"]
ENTRYPOINT ["imgproxy"]
CMD ["serve"]
