#!/usr/bin/env bash
# Creates the peer library's own venv (RePlay 0.22 + Lightning, torch 2.13.0 CPU pinned) and installs llmkt
# into it, so the peer is trained by its own code but split and scored by llmkt's (same users, same items).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${REPLAY_VENV:-benchmarks/.venv-replay}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch==2.13.0 'replay-rec==0.22.*' lightning
  "$VENV/bin/pip" install --quiet -e .  # its torch 2.13.0 already satisfies llmkt's requirement
fi
"$VENV/bin/python" -c "import replay, llmkt; print('replay', replay.__version__ if hasattr(replay, '__version__') else '?')"
