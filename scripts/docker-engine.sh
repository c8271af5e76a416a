# Sourced by scripts/test: make sure a Docker engine answers on the default socket (installing Debian's
# docker.io and starting dockerd in the background when none runs) and that the test image exists,
# built locally FROM scratch with Debian's static busybox (no registry is reachable here).
TEST_IMAGE="worpen-test/busybox:1"
DOCKERD_LOG="${TMPDIR:-/tmp}/worpen-dockerd.log"

engine_answers() { docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1 || ! [ -x /bin/busybox ]; then
  echo "installing docker.io and busybox-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq docker.io busybox-static >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq docker.io busybox-static >/dev/null; }
fi
if ! engine_answers; then
  echo "starting dockerd (log: $DOCKERD_LOG)" >&2
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  for _ in $(seq 1 120); do
    engine_answers && break
    sleep 0.5
  done
  engine_answers || { echo "dockerd did not answer within 60 s:" >&2; tail -n 30 "$DOCKERD_LOG" >&2; exit 1; }
fi
if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
  echo "building $TEST_IMAGE" >&2
  context="$(mktemp -d)"
  cp /bin/busybox "$context/busybox"
  cp tests/docker/Dockerfile "$context/Dockerfile"
  docker build --quiet --tag "$TEST_IMAGE" "$context" >/dev/null 2>&1 \
    || docker build --tag "$TEST_IMAGE" "$context"
  rm -rf "$context"
fi
export WORPEN_TEST_IMAGE="$TEST_IMAGE"
