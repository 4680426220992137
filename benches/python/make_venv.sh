#!/bin/sh
# Makes the venv the benchmark's Python side runs in: `benches/python/make_venv.sh DIR`.
# Creates DIR with `python3 -m venv` (or $CONTREE_PYTHON) unless it already holds one, then
# installs benches/python/requirements.txt from PyPI with --require-hashes, wheels only.
# A stamp (the requirements' sha256) skips the install when nothing changed. Prints DIR/bin/python.
set -eu
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements.txt"
python=${CONTREE_PYTHON:-python3}
if [ ! -x "$dir/bin/python" ]; then
    # A half-made venv from an interrupted run is made again.
    rm -rf "$dir"
    "$python" -m venv "$dir" || {
        echo "could not make a venv at $dir with $python: install Python 3.10+ and its venv module" \
            "(Debian: apt-get install python3 python3-venv)" >&2
        exit 1
    }
fi
want=$(sha256sum "$req" | cut -d' ' -f1)
stamp="$dir/.contree-bench-requirements"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
        --only-binary :all: -r "$req"
    echo "$want" > "$stamp"
fi
echo "$dir/bin/python"
