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


def _attempt(rec, attempt):
    from dataclasses import replace

    return replace(rec, attempt=attempt)


def test_merge_keeps_each_key_once(tmp_path):
    from llmkt.profiles.store import merge_stores

    with ProfileStore(tmp_path / "a.sqlite") as a:
        a.add(_rec("k1", "one"))
        a.add(_rec("k2", "two", user="2"))
        a.add_embeddings(["k1", "k2"], "enc", np.ones((2, 3), dtype=np.float32))
    with ProfileStore(tmp_path / "b.sqlite") as b:
        b.add(_rec("k2", "two", user="2"))  # the same profile: stored once
        b.add(_rec("k3", "three", user="3"))
        b.add(_rec("k1", "other text"))  # same key, another sampled text, same attempt: the first is kept
        b.add_embeddings(["k1", "k3"], "enc", np.full((2, 3), 2.0, dtype=np.float32))
    with ProfileStore(tmp_path / "c.sqlite") as c:
        c.add(_attempt(_rec("k2", "two, regenerated", user="2"), 1))  # a later attempt wins
    counts = merge_stores(tmp_path / "m.sqlite", [tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"])
    got = [(c.read, c.added, c.replaced, c.duplicates, c.conflicts, c.embeddings) for c in counts]
    assert got == [(2, 2, 0, 0, 0, 2), (3, 1, 0, 1, 1, 1), (1, 0, 1, 0, 0, 0)]
    with ProfileStore(tmp_path / "m.sqlite", create=False) as m:
        assert m.count() == 3
        assert {r.key: r.text for r in m.records()} == {"k1": "one", "k2": "two, regenerated", "k3": "three"}
        emb = m.embeddings(["k1", "k2", "k3"], "enc")
        # k1 keeps a's vector (b's belonged to b's text); k2's vector went with the text it replaced; k3 from b
        assert emb["k1"].tolist() == [1.0] * 3 and "k2" not in emb and emb["k3"].tolist() == [2.0] * 3
    again = merge_stores(tmp_path / "m.sqlite", [tmp_path / "a.sqlite"])  # merging twice changes nothing
    assert (again[0].added, again[0].duplicates, again[0].conflicts) == (0, 1, 1)
    with pytest.raises(DataError, match="is also a source"):
        merge_stores(tmp_path / "a.sqlite", [tmp_path / "a.sqlite"])
    with pytest.raises(DataError, match="does not exist"):
        merge_stores(tmp_path / "m.sqlite", [tmp_path / "missing.sqlite"])


def test_merge_reads_sources_without_writing_them(tmp_path):
    import os

    from llmkt.profiles.store import merge_stores

    with ProfileStore(tmp_path / "a.sqlite") as a:
        a.add(_rec("k1", "one"))
    os.chmod(tmp_path / "a.sqlite", 0o444)
    before = (tmp_path / "a.sqlite").read_bytes()
    counts = merge_stores(tmp_path / "m.sqlite", [tmp_path / "a.sqlite"])
    assert counts[0].added == 1 and (tmp_path / "a.sqlite").read_bytes() == before
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(DataError, match="junk.sqlite is not a llmkt profile store"):
        merge_stores(tmp_path / "m.sqlite", [tmp_path / "junk.sqlite"])
