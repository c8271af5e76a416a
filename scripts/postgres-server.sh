# Sourced by scripts/test (and by hand before a PostgreSQL test run): make sure a throwaway PostgreSQL
# cluster answers on loopback for the tests, installing Debian's postgresql when it is missing. The cluster
# lives in a temporary directory owned by the `postgres` user (initdb refuses root), listens on a free
# loopback port with trust authentication (loopback only, no password: it holds nothing but test data)
# and no fsync (a crash loses only the test run), and is stopped by `stop_test_postgres` (scripts/test calls it on exit).
# Exports WORPEN_TEST_POSTGRES_URL, the admin URL the tests create their databases through.
if [ -z "${WORPEN_TEST_POSTGRES_URL:-}" ]; then
  pg_bin=""
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && pg_bin="$dir"
  done
  if [ -z "$pg_bin" ]; then
    echo "installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq postgresql >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
    for dir in /usr/lib/postgresql/*/bin; do
      [ -x "$dir/pg_ctl" ] && pg_bin="$dir"
    done
  fi
  pg_user="$(id -un)"
  as_pg() { "$@"; }
  if [ "$(id -u)" = 0 ]; then
    pg_user=postgres
    as_pg() { runuser -u postgres -- "$@"; }
  fi
  pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/worpen-postgres.XXXXXX")"
  chown "$pg_user" "$pg_dir"
  pg_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_pg "$pg_bin/initdb" --pgdata "$pg_dir/data" --username postgres --auth trust --encoding UTF8 \
    --no-sync >"$pg_dir/initdb.log" 2>&1 \
    || { echo "initdb failed:" >&2; cat "$pg_dir/initdb.log" >&2; exit 1; }
  as_pg "$pg_bin/pg_ctl" --pgdata "$pg_dir/data" --log "$pg_dir/server.log" --wait --timeout 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    start >/dev/null \
    || { echo "PostgreSQL did not start:" >&2; cat "$pg_dir/server.log" >&2; exit 1; }
  export WORPEN_TEST_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:$pg_port/postgres"
  export WORPEN_TEST_POSTGRES_BIN="$pg_bin" WORPEN_TEST_POSTGRES_DATA="$pg_dir/data"
  stop_test_postgres() {
    as_pg "$pg_bin/pg_ctl" --pgdata "$pg_dir/data" --mode immediate stop >/dev/null 2>&1
    rm -rf "$pg_dir"
  }
  echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port ($pg_dir)" >&2
fi
