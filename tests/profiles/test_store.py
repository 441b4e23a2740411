import sqlite3

import numpy as np
import pytest

from llmkt.errors import DataError
from llmkt.profiles.store import ProfileRecord, ProfileStore, profile_key


def _rec(key="k1", text="hello", user='1'):
    return ProfileRecord(key, "ds", user, "hh", "ph", "m", "sh", "{}", 1, 2, 3, "[]", text, 1, 10, 5, 0.5, 0, "{}", 1.0)


def test_add_is_idempotent_and_replace_overwrites(tmp_path):
    with ProfileStore(tmp_path / "s.sqlite") as s:
        assert s.add(_rec()) is True
        assert s.add(_rec(text="other")) is False  # same key: ignored, never duplicated
        assert s.count() == 1 and s.get("k1").text == "hello"
        assert s.add(_rec(text="new"), replace=True) is True
        assert s.count() == 1 and s.get("k1").text == "new"
        assert s.existing(["k1", "k2"]) == {"k1"}
        assert s.jobs() == [{"dataset": "ds", "model_id": "m", "prompt_hash": "ph", "settings_hash": "sh",
                             "profiles": 1, "prompt_tokens": 10, "completion_tokens": 5, "seconds": 0.5}]


def test_key_depends_on_every_part():
    parts = ["ds", '"1"', "hist", "prompt", "model", "settings"]
    base = profile_key(*parts)
    for i in range(len(parts)):
        changed = list(parts)
        changed[i] += "x"
        assert profile_key(*changed) != base


def test_embeddings_round_trip_and_cascade(tmp_path):
    with ProfileStore(tmp_path / "s.sqlite") as s:
        s.add(_rec("a"))
        s.add(_rec("b", user='2'))
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        s.add_embeddings(["a", "b"], "enc", x)
        got = s.embeddings(["a", "b", "c"], "enc")
        assert set(got) == {"a", "b"} and got["b"].tolist() == [3.0, 4.0, 5.0]
        assert s.encoders() == [("enc", 3, 2)]
        s.conn.execute("DELETE FROM profiles WHERE key='a'")
        assert set(s.embeddings(["a", "b"], "enc")) == {"b"}


def test_other_schema_versions_are_refused(tmp_path):
    p = tmp_path / "s.sqlite"
    ProfileStore(p).close()
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="schema version 99"):
        ProfileStore(p)
