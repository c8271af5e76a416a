# Sourced by every entry script (./worpen, scripts/test, bench/*): picks the system Python 3.11 (uv never
# downloads one) and finds uv the same way for all of them: on PATH, else in the project's own tool
# environment (.tools/uv, a `python3 -m venv` with uv installed by its own pip). Nothing is installed
# into the system Python, so this works under Debian's externally managed python3 (PEP 668).
WORPEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$(command -v python3.11 || command -v python3)"
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"
export UV_PYTHON_DOWNLOADS=never UV_PYTHON="$PYTHON"
if ! command -v uv >/dev/null 2>&1; then
  tools="$WORPEN_ROOT/.tools/uv"
  if ! [ -x "$tools/bin/uv" ]; then
    echo "installing uv into $tools" >&2
    if ! "$PYTHON" -m venv --clear "$tools" >/dev/null 2>&1; then
      # Debian ships venv's ensurepip in a package of its own.
      echo "python3 -m venv failed; installing Debian's python3-venv" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
      "$PYTHON" -m venv --clear "$tools"
    fi
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check uv
  fi
  PATH="$tools/bin:$PATH"
  export PATH
fi
