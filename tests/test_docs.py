"""Documented commands cannot rot: every ```bash block of README.md and docs/*.md marked ``<!-- runnable -->`` on
the line above it runs here, as written, with ``set -euo pipefail`` in a fresh folder that holds the repository's
``configs/`` (the real data from ``$LLMKT_DATA``). Blocks with hours of work stay unmarked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MARK = "<!-- runnable -->"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def runnable_blocks() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != MARK:
                continue
            fence = lines[i + 1] if i + 1 < len(lines) else ""
            assert fence.strip() == "```bash", f"{path.name} line {i + 1}: {MARK} must sit right above a ```bash fence"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
            out.append((f"{path.name}:{i + 2}", "\n".join(lines[i + 2:end])))
    return out


BLOCKS = runnable_blocks()


def test_the_docs_mark_their_main_commands_runnable():
    where = {name.split(":")[0] for name, _ in BLOCKS}
    assert {"README.md", "profiles.md"} <= where, where
    text = "\n".join(body for _, body in BLOCKS)
    for cmd in ("llmkt train", "llmkt evaluate", "llmkt profiles generate", "llmkt profiles embed",
                "llmkt profiles export"):
        assert re.search(rf"^{cmd}\b", text, re.M), f"no runnable block runs {cmd!r}"


@pytest.mark.realdata
@pytest.mark.parametrize("name, body", BLOCKS, ids=[n for n, _ in BLOCKS])
def test_runnable_block(name, body, tmp_path, shared_data):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "LLMKT_DATA": str(shared_data), "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "-c", "set -euo pipefail\n" + body], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, f"{name} failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr
