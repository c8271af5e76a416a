# Sourced by ./worpen and scripts/test: use the system Python 3.11 (uv never downloads one) and
# install uv with pip when it is missing.
PYTHON="$(command -v python3.11 || command -v python3)"
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"
export UV_PYTHON_DOWNLOADS=never UV_PYTHON="$PYTHON"
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv" >&2
  "$PYTHON" -m pip install --quiet uv
  PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
fi
