#!/usr/bin/env bash
# Create tests/authserver/.venv with the pinned test authorization server.
# Idempotent: does nothing when the venv matches requirements.txt already.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "authserver venv up to date: $venv"
    exit 0
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$here/requirements.txt"
"$venv/bin/python" -c 'import django, oauth2_provider; print("django", django.get_version(), "dot", oauth2_provider.__version__)'
echo "$want" >"$stamp"
echo "authserver venv ready: $venv"
