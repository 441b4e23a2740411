"""Checkpoint files: written atomically, read with ``torch.load(weights_only=True)`` only.

A checkpoint holds tensors and plain Python values (numbers, strings, lists, dicts, tuples, None); RNG states are
stored in that form too (``llmkt.training.seeding.rng_state``). ``weights_only=True`` makes torch refuse any other
object instead of unpickling it, so a ``last.pt`` or ``best.pt`` handed to a user cannot run code on their machine.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmkt.errors import DataError


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays turned into Python numbers and tensors (what ``weights_only`` reads)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_checkpoint(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and a rename: a crash never leaves a half file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(plain(obj), tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, what: str = "checkpoint") -> Any:
    """Read a checkpoint with ``weights_only=True``; every failure is a :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{what}: {path} is empty (0 bytes): the run was killed while writing it, or the file was "
                        "truncated. Use the other checkpoint of the run (best.pt / last.pt) or train again.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise DataError(f"{what}: {path} holds objects other than tensors and plain values; it was not written "
                            "by this llmkt (or was tampered with) and is refused unread, because loading such objects "
                            f"could run code ({first[:160]}).") from None
        raise DataError(f"{what}: {path} is not a readable checkpoint ({first[:160]}); the file is damaged.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise DataError(f"{what}: {path} ({size} bytes) is not a readable checkpoint ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else 'truncated'}); the run was "
                        "probably killed while writing it. Use the run's other checkpoint or train again.") from None
