# Lead Hub container (see README, "Running in a container"):
#   docker build -t leadhub .
#   docker run -p 8000:8000 -v leadhub-data:/data -v "$PWD/mappings:/config:ro" --env-file leadhub.env leadhub
# The image's /config holds the shipped examples; they need the secrets they name
# (TYPEFORM_SECRET, ZAPIER_TOKEN, ...) in the environment, like any config.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LEADHUB_HOST=0.0.0.0 \
    LEADHUB_PORT=8000 \
    LEADHUB_DB=sqlite:////data/leadhub.db \
    LEADHUB_CONFIG_DIR=/config

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY hub ./hub
RUN pip install . && useradd --system --home-dir /data leadhub \
    && mkdir -p /data /config && chown leadhub /data
COPY mappings /config

USER leadhub
VOLUME ["/data"]
EXPOSE 8000
# /healthz on the port serve listens on, never through HTTP_PROXY (set for the outside world)
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('LEADHUB_PORT', '8000'), timeout=2)" || exit 1
ENTRYPOINT ["leadhub"]
CMD ["serve"]
