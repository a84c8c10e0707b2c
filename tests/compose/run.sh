#!/usr/bin/env bash
# make compose-test: the fleet of docker-compose.yml, built and run for real with Podman and podman-compose.
#
# Builds the image, brings the fleet up under its own project name (host ports on loopback only), serves
# pages from a container on the fleet's network, submits them with `ingest submit`, SIGKILLs the
# process-worker container mid-run and lets its restart policy bring it back, then checks: every URL
# terminal, the counts add up, stored == exported, each id once. Also checks the container defects of
# issue 15 (CPU limit, Redis user and settings, secrets with awkward characters, healthchecks, Flower auth,
# settings pass-through). Tears down every container, volume, network and image it made.
#
# Kept between runs on purpose: Podman itself and podman-compose when this script installed them (apt;
# a venv under ~/.cache/article-ingest), and the local base images of base-image.sh (no registry here).
# COMPOSE_TEST_PAGES (400) sets the number of articles.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/compose
start=$(date +%s)
log() { echo "compose-test [$(($(date +%s) - start))s]: $*"; }

# -- engine ------------------------------------------------------------------------------------------------
# runc (crun fails on this hybrid cgroup setup) and ulimits the sandbox allows; never edits /etc/containers
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/$here/containers.conf}"
if ! command -v podman > /dev/null || ! command -v debootstrap > /dev/null || ! command -v iptables > /dev/null; then
  log "installing podman (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc netavark fuse-overlayfs debootstrap iptables \
    > /dev/null
fi
PC_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/article-ingest/podman-compose"
if [ ! -x "$PC_VENV/bin/podman-compose" ]; then
  log "installing podman-compose 1.6 (PyPI) in $PC_VENV"
  python3 -m venv "$PC_VENV"
  "$PC_VENV/bin/pip" install -q 'podman-compose>=1.6,<1.7'
fi
PODMAN_COMPOSE="$PC_VENV/bin/podman-compose"

# -- images ------------------------------------------------------------------------------------------------
OFFICIAL_BASE=python:3.12.8-slim-bookworm
OFFICIAL_REDIS=redis:7.4-alpine
if timeout 60 podman pull -q "docker.io/library/$OFFICIAL_BASE" > /dev/null 2>&1 \
  && timeout 60 podman pull -q "docker.io/library/$OFFICIAL_REDIS" > /dev/null 2>&1; then
  export BASE_IMAGE="docker.io/library/$OFFICIAL_BASE" REDIS_IMAGE="docker.io/library/$OFFICIAL_REDIS"
else
  log "no image registry answers: local Debian base images"
  "$here/base-image.sh"
  export BASE_IMAGE=localhost/ingest-base:bookworm REDIS_IMAGE=localhost/ingest-redis:bookworm
fi

PROJECT="ingest-ct-$$"
WORK="$(mktemp -d /tmp/ingest-compose-test.XXXXXX)"
export INGEST_IMAGE="localhost/article-ingest:$PROJECT"
images_before="$WORK/images-before"
podman images -a -q --no-trunc | sort -u > "$images_before"
PC=("$PODMAN_COMPOSE" -p "$PROJECT" -f docker-compose.yml)

teardown() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    log "FAILED; last logs:"
    for svc in redis fetch-worker process-worker; do
      echo "--- $svc"
      podman logs --tail 30 "${PROJECT}_${svc}_1" 2>&1 | tail -30
    done
  fi
  if [ "${COMPOSE_TEST_KEEP:-}" = 1 ]; then
    log "COMPOSE_TEST_KEEP=1: left up; tear down with: $PODMAN_COMPOSE -p $PROJECT down -v; podman rm -f $PROJECT-pages"
    exit "$rc"
  fi
  log "tearing down $PROJECT"
  podman rm -f -t 0 "$PROJECT-pages" > /dev/null 2>&1
  "${PC[@]}" down -v -t 5 > /dev/null 2>&1
  podman network rm -f "${PROJECT}_default" > /dev/null 2>&1
  for v in data redis flower; do podman volume rm -f "${PROJECT}_$v" > /dev/null 2>&1; done
  # the project image and the intermediate images its build made; base images stay (cached on purpose)
  podman rmi -f "$INGEST_IMAGE" > /dev/null 2>&1
  for _ in 1 2 3; do # children before parents
    comm -13 "$images_before" <(podman images -a -q --no-trunc | sort -u) | xargs -r podman rmi -f > /dev/null 2>&1
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap teardown EXIT

t0=$(date +%s)
log "building $INGEST_IMAGE on $BASE_IMAGE"
CA=/etc/ssl/certs/ca-certificates.crt
ca_mount=()
[ -f "$CA" ] && ca_mount=(-v "$CA:$CA:ro") # TLS to PyPI may be intercepted by a local CA
podman build -q --layers=false --format docker "${ca_mount[@]}" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$INGEST_IMAGE" . \
  > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
build_s=$(($(date +%s) - t0))
size=$(podman image inspect --format '{{.Size}}' "$INGEST_IMAGE")
log "image built in ${build_s}s, $((size / 1000000)) MB"

# -- secrets and settings ----------------------------------------------------------------------------------
export SECRETS_DIR="$WORK/secrets"
mkdir -m 700 "$SECRETS_DIR"
# characters that break a raw URL (/ # @ :), one that a decoder would turn into A (%41), a space, a quote
printf '%s\n' 'p/a#s@s:w %41"rd' > "$SECRETS_DIR/redis_password"
printf '%s\n' 'ops:flower-test-pw' > "$SECRETS_DIR/flower_basic_auth"
printf '%s\n' 'prom:metrics-test-pw' > "$SECRETS_DIR/metrics_basic_auth"
chmod 644 "$SECRETS_DIR"/*
export INGEST_ENV_FILE="$WORK/fleet.env"
cat > "$INGEST_ENV_FILE" << 'EOF'
# the pages live on the fleet's private network; one host serves all of them, and fast
INGEST_ALLOW_PRIVATE_NETWORKS=true
INGEST_HOST_INTERVAL=0
INGEST_RESPECT_ROBOTS=false
# a killed worker's pages come back within a minute: its process tasks stop renewing their leases, which
# run out after INGEST_PROCESS_LEASE (the default 120 s), not the broker's visibility timeout (an hour)
INGEST_EXTRACT_TIMEOUT=15
INGEST_STORAGE_RETRY_MAX=15
INGEST_PROCESS_LEASE=45
INGEST_FETCH_LEASE=45
INGEST_VISIBILITY_TIMEOUT=30
# passes through to the fetch worker's threads (the compose command no longer overrides it)
INGEST_FETCH_CONCURRENCY=8
EOF
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
FLOWER_PORT=$(free_port)
METRICS_PORT=$(free_port)
export FLOWER_PORT METRICS_PORT

# -- fleet -------------------------------------------------------------------------------------------------
log "fleet up: project $PROJECT"
"${PC[@]}" up -d --no-build > "$WORK/up.log" 2>&1 || { tail -30 "$WORK/up.log"; exit 1; }
c() { echo "${PROJECT}_$1_1"; }
in_fetch() { podman exec -i "$(c fetch-worker)" ingest-entrypoint "$@"; }

pages="$WORK/site"
expected="$WORK/expected.json"
python3 "$here/make_pages.py" "$pages" http://pages:8000 --pages "${COMPOSE_TEST_PAGES:-400}" > "$expected"
chmod -R a+rX "$pages"
podman run -d --name "$PROJECT-pages" --network "${PROJECT}_default" --network-alias pages \
  -v "$pages/pages:/srv:ro" --entrypoint python3 "$INGEST_IMAGE" -m http.server 8000 -d /srv > /dev/null

wait_for() { # seconds, description, command...
  local deadline=$(($(date +%s) + $1)) what=$2
  shift 2
  until "$@" > /dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out waiting for $what"; return 1; }
    sleep 1
  done
}
wait_for 90 "the workers' health" sh -c \
  "podman exec $(c fetch-worker) ingest-entrypoint health --worker && podman exec $(c process-worker) ingest-entrypoint health --worker"
log "workers healthy"

# -- the container defects, checked ------------------------------------------------------------------------
fail=0
check() { # description, command...
  local what=$1
  shift
  if "$@"; then log "ok: $what"; else log "FAIL: $what"; fail=1; fi
}
redis_cli() { podman exec "$(c redis)" sh -c 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli "$@"' - "$@"; }
check "redis runs as a non-root user" [ "$(podman exec "$(c redis)" id -u)" != 0 ]
check "redis: appendfsync always, noeviction, a maxmemory" \
  [ "$(redis_cli config get appendfsync | tail -1)/$(redis_cli config get maxmemory-policy | tail -1)" = always/noeviction ]
check "redis: maxmemory set" [ "$(redis_cli config get maxmemory | tail -1)" -gt 0 ]
check "no password in any ingest container's environment" \
  sh -c "! podman inspect --format '{{.Config.Env}}' $(c fetch-worker) $(c flower) $(c metrics) | grep -q 'flower-test-pw\|metrics-test-pw\|%41'"
cpus=$(podman exec "$(c process-worker)" python3 -c 'from ingest_core.cpus import available_cpus; print(available_cpus())')
check "process worker sees its CPU limit (1), not the host's $(nproc) cores" [ "$cpus" = 1 ]
pool_size() { # the -c of the celery worker command line in container $1
  podman exec "$1" sh -c 'for f in /proc/[0-9]*/cmdline; do tr "\0" " " < "$f"; echo; done' 2> /dev/null \
    | grep -E -- '-m celery .*worker' | grep -oE -- ' -c [0-9]+' | head -1 | sed 's/^ //'
}
pool=$(pool_size "$(c process-worker)")
check "process pool sized from the limit ($pool)" [ "$pool" = "-c 1" ]
pool=$(pool_size "$(c fetch-worker)")
check "INGEST_FETCH_CONCURRENCY from the env file reaches the fetch worker ($pool)" [ "$pool" = "-c 8" ]
wait_for 30 "flower" curl -fsS -o /dev/null -u ops:flower-test-pw "http://127.0.0.1:$FLOWER_PORT/healthcheck"
check "flower refuses a request without basic auth" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FLOWER_PORT/workers")" = 401 ]
check "flower answers with basic auth" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' -u ops:flower-test-pw "http://127.0.0.1:$FLOWER_PORT/workers")" = 200 ]
check "flower and metrics healthchecks pass" sh -c \
  "podman exec $(c flower) ingest-entrypoint health --http http://127.0.0.1:5555/healthcheck && podman exec $(c metrics) ingest-entrypoint health --http http://127.0.0.1:9808/metrics"
# a hung worker is noticed: SIGSTOP the fetch worker's Celery process, its healthcheck must fail
celery_pid=$(podman exec "$(c fetch-worker)" sh -c 'for d in /proc/[0-9]*; do
  tr "\0" " " < "$d/cmdline" 2> /dev/null | grep -q -- "[-]m celery .*worker" && { basename "$d"; break; }; done; true')
podman exec "$(c fetch-worker)" sh -c "kill -STOP $celery_pid" # the shell builtin: no procps here
check "a stopped (hung) worker fails its healthcheck" \
  sh -c "! podman exec $(c fetch-worker) ingest-entrypoint health --worker --timeout 3 > /dev/null 2>&1"
podman exec "$(c fetch-worker)" sh -c "kill -CONT $celery_pid"
check "and passes again once it runs" podman exec "$(c fetch-worker)" ingest-entrypoint health --worker
check "metrics exporter serves on host loopback, behind basic auth" sh -c \
  "curl -fsS -o /dev/null -u prom:metrics-test-pw http://127.0.0.1:$METRICS_PORT/metrics && [ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$METRICS_PORT/metrics) = 401 ]"

# -- submit, kill the process worker mid-run, let the restart policy bring it back -------------------------
total=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["submitted"])' "$expected")
stat() { in_fetch stats --json | python3 -c "import json, sys; s = json.load(sys.stdin); print(s['$1'])"; }
t_submit=$(date +%s)
# as the README says: a one-off container of the fetch-worker service
"${PC[@]}" run --rm -T fetch-worker submit -f - < "$pages/urls.txt" > "$WORK/submit.log" 2>&1 \
  || { cat "$WORK/submit.log"; exit 1; }
log "submitted $total URLs"
victim=$(c process-worker)
host_before=$(podman exec "$victim" hostname)
wait_for 300 "a quarter of the pages stored" sh -c "[ \$(podman exec $(c fetch-worker) ingest-entrypoint stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"stored\"])') -ge $((total / 4)) ]"
stored_at_kill=$(stat stored)
restarts_before=$(podman inspect --format '{{.RestartCount}}' "$victim")
t_kill=$(date +%s)
# from the host, as the OOM killer or a crash would: `podman kill` counts as a manual stop, which the restart
# policy ignores. The container's init dies, so the kernel kills every process in it.
kill -KILL "$(podman inspect --format '{{.State.Pid}}' "$victim")"
log "SIGKILLed $victim (host $host_before) at $stored_at_kill stored"
wait_for 120 "the restart policy to bring $victim back" sh -c \
  "[ \$(podman inspect --format '{{.RestartCount}}' $victim) -gt $restarts_before ] && [ \$(podman inspect --format '{{.State.Running}}' $victim) = true ]"
t_back=$(date +%s)
host_after=$(podman exec "$victim" hostname)
log "back after $((t_back - t_kill))s (host $host_after)"
wait_for 600 "every URL terminal" sh -c "[ \$(podman exec $(c fetch-worker) ingest-entrypoint stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])') = 0 ]"
t_done=$(date +%s)
log "all $total URLs terminal $((t_done - t_submit))s after submit ($((t_done - t_kill))s after the kill)"

# -- verdict -----------------------------------------------------------------------------------------------
# the process worker's warm shutdown publishes its part files; then read everything back
"${PC[@]}" stop -t 75 process-worker > /dev/null 2>&1
in_fetch stats --json > "$WORK/stats.json"
"${PC[@]}" run --rm -T fetch-worker export --to - > "$WORK/export.jsonl" 2> "$WORK/export.err" \
  || { cat "$WORK/export.err"; exit 1; }
podman exec "$(c fetch-worker)" sh -c 'find /data/records -name "*.jsonl" -exec cat {} +' \
  | python3 -c 'import json, sys; [print(json.loads(l)["id"]) for l in sys.stdin if l.strip()]' > "$WORK/raw-ids"
check "no part file left in progress" \
  [ -z "$(podman exec "$(c fetch-worker)" find /data/records -name '*.inprogress' -size +0)" ]
check "records, stats and export agree" python3 "$here/check.py" "$expected" "$WORK/stats.json" "$WORK/export.jsonl" "$WORK/raw-ids"
log "figures: image $((size / 1000000)) MB, build ${build_s}s; kill at $stored_at_kill/$total stored, container back in $((t_back - t_kill))s, all terminal $((t_done - t_kill))s after the kill; hostname $host_before -> $host_after"
[ "$fail" = 0 ] || exit 1
log "PASS in $(($(date +%s) - start))s"
