"""Profiles written elsewhere (another LLM, another paper's release) entering the store like generated ones.

``read_profile_file`` reads a CSV or JSONL file of ``id, text`` rows; ``import_profiles`` stores one record per
user of the job whose id is in the file. An imported profile's recorded history is the user's training
history in the job's split: the source is declared to have seen that (RLMRec, for instance, says its profiles
come from training interactions), so the leak check at use refuses these profiles for a split in which any of
those interactions is validation or test. Keys cover the file's SHA-256: a changed file gives new profiles.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmkt.errors import DataError
from llmkt.profiles.generate import GenerateReport, ProfileJob
from llmkt.profiles.history import UserHistory, history_hash, user_key
from llmkt.profiles.store import ProfileRecord, ProfileStore


@dataclass
class ProfileFile:
    path: Path
    texts: dict[str, str]  # user_key(id) -> text
    sha256: str
    rows: int


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (the same digest the weights registry checks)."""
    from llmkt.profiles.weights import _sha256

    return _sha256(Path(path))


def _canonical(value: Any) -> str:
    """ids from text files match integer ids: '12' and 12 are one id; other text stays text."""
    if isinstance(value, str):
        v = value.strip()
        if v.lstrip("-").isdigit():
            return user_key(int(v))
        return user_key(v)
    if isinstance(value, float) and value.is_integer():
        return user_key(int(value))
    return user_key(value.item() if hasattr(value, "item") else value)


def read_profile_file(path: str | Path, id_column: str, text_column: str) -> ProfileFile:
    """A CSV (quoted texts may hold newlines) or JSONL file of profiles; every problem names the row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"backend.path: {path} does not exist.")
    try:
        if path.suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            df = pd.read_csv(path, dtype={text_column: str}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable profile file ({str(e).splitlines()[0][:200]}); expected CSV with a "
                        f"header or JSON lines, with the columns {id_column!r} and {text_column!r}.") from None
    missing = [c for c in (id_column, text_column) if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {missing}; columns: {list(df.columns)[:10]}. Set backend.id_column and "
                        "backend.text_column.")
    line = (lambda i: f"line {i + 2}") if path.suffix not in (".jsonl", ".json") else (lambda i: f"line {i + 1}")
    texts: dict[str, str] = {}
    for i, (uid, text) in enumerate(zip(df[id_column], df[text_column])):
        key = _canonical(uid)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} {line(i)}: the text of id {uid!r} is empty; drop the row or fill it (empty "
                            "profiles are never stored).")
        if key in texts:
            raise DataError(f"{path} {line(i)}: id {uid!r} appears a second time; keep one profile per id.")
        texts[key] = text.strip()
    return ProfileFile(path, texts, file_digest(path), len(df))


def import_profiles(job: ProfileJob, histories: list[UserHistory], store_path: str | Path,
                    profiles: ProfileFile) -> GenerateReport:
    """Store the file's profile of every user in ``histories`` (one record each, ``INSERT OR IGNORE``)."""
    store_path = Path(store_path)
    with ProfileStore(store_path) as store:
        keys = [job.key(h) for h in histories]
        have = store.existing(keys)
        report = GenerateReport(store_path, len(histories), len(have))
        t0 = time.perf_counter()
        for h, key in zip(histories, keys):
            if key in have:
                continue
            text = profiles.texts.get(user_key(h.user_id)) or profiles.texts.get(_canonical(h.user_id))
            if text is None:
                report.failed += 1
                if len(report.errors) < 20:
                    report.errors.append(f"id {h.user_id!r}: no profile in {profiles.path.name}")
                continue
            ts, order = h.cutoff
            rec = ProfileRecord(
                key=key, dataset=job.dataset, user_id=user_key(h.user_id), history_hash=history_hash(h.keys()),
                prompt_hash=job.prompt_hash, model_id=job.model_id, settings_hash=job.settings_hash, split=job.split,
                cutoff_timestamp=ts, cutoff_order=order, n_items=len(h),
                history=json.dumps(h.keys(), separators=(",", ":")), text=text, calls=0, prompt_tokens=0,
                completion_tokens=0, seconds=0.0, attempt=0,
                settings=json.dumps({"imported_from": str(profiles.path), "sha256": profiles.sha256}),
                created=time.time())
            if store.add(rec):
                report.generated += 1
        report.seconds = time.perf_counter() - t0
        known = {user_key(h.user_id) for h in histories} | {_canonical(h.user_id) for h in histories}
        report.not_in_dataset = sum(1 for k in profiles.texts if k not in known)
    return report
