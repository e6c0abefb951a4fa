# Shared by scripts/run and scripts/test: a virtual environment with the pinned
# requirements, (re)installed only when requirements.txt changes.
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtual environment in $VENV" >&2
  python3 -m venv "$VENV"
fi
# Playwright drives the system chromium: never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
_want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$_want" ]; then
  echo "Installing requirements into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$_want" > "$VENV/.requirements.sha256"
fi
PY="$VENV/bin/python"
