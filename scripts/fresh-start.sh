#!/usr/bin/env bash
# Proves the README's start command on a fresh copy of the tree, under Debian's own (externally managed)
# python3 with no uv on PATH: `./worpen serve` must install uv without touching the system Python, sync
# the locked dependencies and answer /health. Run by scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f /usr/lib/python3.11/EXTERNALLY-MANAGED ] && [ -x /usr/bin/python3 ] \
  || { echo "no Debian-managed /usr/bin/python3 on this machine" >&2; exit 1; }

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill -INT -- "-$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/worpen"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$work/worpen" -xf -

ports="$(/usr/bin/python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
read -r port grpc_port <<<"$ports"

(cd "$work/worpen" && exec setsid env -u UV_PYTHON -u VIRTUAL_ENV PATH=/usr/bin:/bin WORPEN_DOCKER_HOSTS=none \
  WORPEN_DATABASE_URL="sqlite+aiosqlite:///$work/worpen.db" ./worpen serve --port "$port" --grpc-port "$grpc_port") \
  >"$work/serve.log" 2>&1 &
server=$!

if ! /usr/bin/python3 - "$port" "$server" <<'PY'
import os, sys, time, urllib.request
deadline = time.monotonic() + 300
def alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while time.monotonic() < deadline and alive(sys.argv[2]):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as answer:
            body = answer.read().decode()
            if answer.status == 200 and body == "OK":
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
PY
then
  echo "./worpen serve under /usr/bin/python3 did not answer /health:" >&2
  tail -n 40 "$work/serve.log" >&2
  exit 1
fi
uv_path="$(ls "$work/worpen/.tools/uv/bin/uv")"
echo "fresh copy, PATH=/usr/bin:/bin: uv installed in ${uv_path#"$work/worpen/"}, /health answered OK"
