#!/usr/bin/env bash
# Creates .venv with python-banyan 3.17 (the reference implementation the
# interop tests talk to). Tests find it at $BANYAN_PYTHON or .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import python_banyan, msgpack, zmq' 2>/dev/null; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check "python-banyan==3.17"
fi
.venv/bin/python -c 'import python_banyan.banyan_base, msgpack, zmq; print("python-banyan venv ready:", msgpack.version, zmq.zmq_version())'
