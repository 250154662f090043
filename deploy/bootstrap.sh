# Sourced by deploy/demo/run.sh and tests/run: a virtualenv in .venv with streamd and its extras.
# Installs the Debian packages streamd's demo and tests use (mosquitto, ffmpeg) when they are
# missing and we may (root, or sudo without a password).
set -euo pipefail
STREAMD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STREAMD_EXTRAS="${STREAMD_EXTRAS:-test}"

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "$STREAMD_EXTRAS" = test ]; then
  # A real RTSP camera for the source tests: GStreamer's RTSP server under the system Python.
  [ -e /usr/lib/x86_64-linux-gnu/girepository-1.0/GstRtspServer-1.0.typelib ] \
    || ls /usr/lib/*/girepository-1.0/GstRtspServer-1.0.typelib >/dev/null 2>&1 \
    || missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
                 gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad)
  # x265enc (an H.265 camera) is in plugins-bad.
  dpkg -s gstreamer1.0-plugins-bad >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)
  # A real browser for the page's tests (driven by Playwright, never downloading its own).
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    echo "streamd: please install: ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
  else
    echo "streamd: installing ${missing[*]} with apt-get" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x "$STREAMD_ROOT/.venv/bin/python" ]; then
  echo "streamd: creating $STREAMD_ROOT/.venv" >&2
  "$PY" -m venv "$STREAMD_ROOT/.venv"
fi
# Re-install only when pyproject.toml changed since the last install.
stamp="$STREAMD_ROOT/.venv/.streamd-$STREAMD_EXTRAS-$(sha256sum "$STREAMD_ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "streamd: pip install -e .[$STREAMD_EXTRAS]" >&2
  "$STREAMD_ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$STREAMD_ROOT[$STREAMD_EXTRAS]"
  touch "$stamp"
fi
export PATH="$STREAMD_ROOT/.venv/bin:$PATH"
