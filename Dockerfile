# The Continuum application image used by compose.yaml (ingest, learner, dashboard).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1

WORKDIR /app
COPY . /app
RUN pip install . && useradd --create-home --uid 10001 continuum && mkdir -p /data && chown continuum /data
USER continuum
ENTRYPOINT []
CMD ["continuum", "--help"]
