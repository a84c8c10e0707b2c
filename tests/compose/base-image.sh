#!/usr/bin/env bash
# Local base images for machines where no image registry answers (this one): Debian bookworm made with
# debootstrap from Debian's mirror, imported into Podman. Kept between runs on purpose (they take ~2 min and
# never change): `podman rmi localhost/ingest-base:bookworm localhost/ingest-redis:bookworm` removes them.
#   localhost/ingest-base:bookworm   python3 (3.11) + venv + CA certificates: BASE_IMAGE of our Dockerfile
#   localhost/ingest-redis:bookworm  the same plus Debian's redis-server (7.0), run as user redis
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BASE=localhost/ingest-base:bookworm
REDIS=localhost/ingest-redis:bookworm
CA=/etc/ssl/certs/ca-certificates.crt
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if ! podman image exists "$BASE"; then
  rootfs="$(mktemp -d /var/tmp/ingest-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  echo "compose-test: building $BASE with debootstrap (once; cached)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" \
    > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # what python:slim leaves out too: downloaded packages, apt lists, docs, man pages, locales
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE" > /dev/null
fi

if ! podman image exists "$REDIS"; then
  echo "compose-test: building $REDIS from Debian's redis-server package (once; cached)"
  podman build -q --layers=false --format docker -v "$CA:$CA:ro" -t "$REDIS" -f "$here/redis.Containerfile" "$here" > /dev/null
fi
