"""Summaries of a profile job for ``llmkt profiles stats`` and ``show``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from llmkt.profiles.config import ProfilesConfig, load_profiles_config
from llmkt.profiles.generate import Job
from llmkt.profiles.store import ProfileRecord, ProfileStore


def job_profiles(config: ProfilesConfig | str | Path | dict | None, overrides: list[str] | None = None
                 ) -> list[ProfileRecord]:
    """This job's stored profiles (current training histories only), in internal user order."""
    from llmkt.profiles.embed import job_records

    cfg = load_profiles_config(config, overrides)
    with ProfileStore(cfg.store_path(), create=False) as store:
        _, recs = job_records(cfg, store)
    return recs


def job_stats(config: ProfilesConfig | str | Path | dict | None, overrides: list[str] | None = None
              ) -> dict[str, Any]:
    from llmkt.profiles.embed import job_records

    cfg = load_profiles_config(config, overrides)
    with ProfileStore(cfg.store_path(), create=False) as store:
        split, recs = job_records(cfg, store)
        users = int(split.train["uid"].nunique()) if cfg.users.ids is None else len(cfg.users.ids)
        if cfg.users.limit is not None:
            users = min(users, cfg.users.limit)
        encoders = store.encoders()
    check = Job.of(cfg, split).flagger()
    per = [(r, check(r.text)) for r in recs]
    counts = Counter(f for _, fl in per for f in fl)
    words = np.array([len(r.text.split()) for r in recs]) if recs else np.zeros(0)
    secs = np.array([r.seconds for r in recs]) if recs else np.zeros(0)
    return {
        "store": str(cfg.store_path()),
        "model": recs[0].model_id if recs else None,
        "users": users,
        "profiles": len(recs),
        "missing": users - len(recs),
        "prompt_tokens": int(sum(r.prompt_tokens for r in recs)),
        "completion_tokens": int(sum(r.completion_tokens for r in recs)),
        "llm_calls": int(sum(r.calls for r in recs)),
        "seconds_sum": float(secs.sum()),
        "seconds_median": float(np.median(secs)) if len(secs) else 0.0,
        "words_median": float(np.median(words)) if len(words) else 0.0,
        "words_min": int(words.min()) if len(words) else 0,
        "flags": dict(counts),
        # single-call profiles whose answer used the whole max_tokens budget: probably cut mid-sentence
        "hit_max_tokens": sum(1 for r in recs if r.calls == 1 and
                              r.completion_tokens >= json.loads(r.settings).get("max_tokens", 1 << 30)),
        "flagged_profiles": sum(1 for _, fl in per if fl),
        "encoders": [{"encoder": e, "dim": d, "vectors": n} for e, d, n in encoders],
        "flagged_examples": [{"user_id": r.external_user, "flags": fl, "text": r.text} for r, fl in per if fl],
    }
