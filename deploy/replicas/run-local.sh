#!/usr/bin/env bash
# The same topology as compose.yaml, as plain processes on this machine: PostgreSQL, two Worpen replicas and
# nginx round robin in front, all on loopback. For trying replicas out and for the benchmarks' shape; a real
# installation runs each piece under its supervisor (systemd, compose, Kubernetes).
#
#   deploy/replicas/run-local.sh [DIR]      # DIR (default ./worpen-replicas) keeps the database and logs
#
# Uses $WORPEN_DATABASE_URL when set (your PostgreSQL); otherwise starts a PostgreSQL cluster in DIR/postgres
# (Debian's postgresql, installed if missing). The API is then on http://127.0.0.1:3000 and agents connect to
# 127.0.0.1:3001; the replicas listen on 3100/3101 (HTTP) and 3110/3111 (gRPC). Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$(mkdir -p "${1:-worpen-replicas}" && cd "${1:-worpen-replicas}" && pwd)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${stop_postgres:-}" ] && $stop_postgres
}
trap cleanup EXIT INT TERM

has_postgres() { ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }
if ! command -v nginx >/dev/null 2>&1 || { [ -z "${WORPEN_DATABASE_URL:-}" ] && ! has_postgres; }; then
  echo "installing Debian's nginx-light and postgresql" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light postgresql >/dev/null
fi

if [ -z "${WORPEN_DATABASE_URL:-}" ]; then
  pg_bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -n 1)")"
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  mkdir -p "$dir/postgres"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/postgres"
  [ -f "$dir/postgres/data/PG_VERSION" ] \
    || run_pg "$pg_bin/initdb" -D "$dir/postgres/data" -U worpen --auth trust >/dev/null
  run_pg "$pg_bin/pg_ctl" -D "$dir/postgres/data" -l "$dir/postgres/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p 5433 -k $dir/postgres" start >/dev/null
  stop_postgres="run_pg $pg_bin/pg_ctl -D $dir/postgres/data -m fast stop"
  run_pg "$pg_bin/psql" -h 127.0.0.1 -p 5433 -U worpen -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'worpen'" | grep -q 1 \
    || run_pg "$pg_bin/createdb" -h 127.0.0.1 -p 5433 -U worpen worpen
  export WORPEN_DATABASE_URL="postgresql+asyncpg://worpen@127.0.0.1:5433/worpen"
fi

# One secrets key for every replica (pipeline secrets sealed by one are opened by the others), kept in DIR.
if [ -z "${WORPEN_SECRETS_KEY:-}" ]; then
  [ -f "$dir/secrets.key" ] || (umask 077 && python3 -c \
    'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())' >"$dir/secrets.key")
  export WORPEN_SECRETS_KEY_FILE="$dir/secrets.key"
fi
export WORPEN_DOCKER_HOSTS="${WORPEN_DOCKER_HOSTS:-none}" WORPEN_TRUSTED_PROXIES=127.0.0.1/32

names=(worpen-a worpen-b)
for replica in 0 1; do
  name="${names[$replica]}"
  WORPEN_REPLICA_ID="$name" WORPEN_REPLICA_ADDRESS="127.0.0.1:311$replica" \
    "$root/worpen" serve --port "310$replica" --grpc-port "311$replica" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  # The first replica migrates the database (and prints the first admin key) before the second starts.
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:310$replica/ready" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "http://127.0.0.1:310$replica/ready" >/dev/null || { echo "$name did not get ready:" >&2; tail "$dir/$name.log" >&2; exit 1; }
done

sed -e 's/worpen-a:3000/127.0.0.1:3100/; s/worpen-b:3000/127.0.0.1:3101/' \
    -e 's/worpen-a:3001/127.0.0.1:3110/; s/worpen-b:3001/127.0.0.1:3111/' \
    -e 's/listen 3000;/listen 127.0.0.1:3000;/; s/listen 3001 http2;/listen 127.0.0.1:3001 http2;/' \
    -e "s|^events|pid $dir/nginx.pid;\nerror_log $dir/nginx.log;\nevents|" \
    "$root/deploy/replicas/nginx.conf" >"$dir/nginx.conf"
sed -i "s|^http {|http {\n    access_log off;\n    client_body_temp_path $dir/nginx-body;\n    proxy_temp_path $dir/nginx-proxy;|" "$dir/nginx.conf"
nginx -c "$dir/nginx.conf" -g 'daemon off;' &
pids+=($!)

grep -h -A2 "admin key" "$dir"/worpen-*.log 2>/dev/null || true
echo "Worpen: http://127.0.0.1:3000 (agents: 127.0.0.1:3001); logs in $dir. Ctrl-C stops." >&2
wait -n "${pids[@]}"
