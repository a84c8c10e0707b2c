# article-ingest: one slim image for every role (fetch worker, process worker, flower, metrics, CLI).
# Build: docker build -t article-ingest .   Run: docker run --rm article-ingest --help
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY producers ./producers
# the s3 extra brings s3fs; PostgreSQL and Prometheus clients are core dependencies
RUN pip install --no-cache-dir --prefix=/install ".[s3]"

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 INGEST_DATA_DIR=/data INGEST_STORAGE_URL=/data/records
COPY --from=build /install /usr/local
# workers never need root: a fixed uid so volumes can be chowned once
RUN useradd --uid 10001 --create-home ingest && mkdir /data && chown ingest /data
USER ingest
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["ingest"]
CMD ["--help"]
