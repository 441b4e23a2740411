"""Profiles written elsewhere: imported into the store, embedded, exported and leak-checked like generated ones."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from llmkt.cli import main
from llmkt.errors import DataError
from llmkt.experiments.profiles import embed_profiles, export_vectors, import_profiles_of, job_stats
from llmkt.profiles.embed import Encoder
from llmkt.profiles.history import LeakError


class LengthEncoder(Encoder):
    encoder_id = "test:length"

    def encode(self, texts):
        return np.array([[len(t), t.count(" "), 1.0] for t in texts], dtype=np.float32)


def _job(tmp_path, csv_folder, path, **backend):
    return {"data": {"name": "csv", "path": str(csv_folder)}, "split": {"kind": "leave_one_out"},
            "store": str(tmp_path / "s.sqlite"), "progress": False,
            "backend": {"kind": "import", "path": str(path), "source": "gpt-x (paper)", "id_column": "uid",
                        "text_column": "profile", **backend}}


def test_import_embed_export_and_leak_check(tmp_path, csv_folder, movie_ratio_split):
    f = tmp_path / "p.csv"
    f.write_text('uid,profile\n1,"Loves dramas,\nand war films."\n2,Comedies only.\n99,Not a user here.\n')
    job = _job(tmp_path, csv_folder, f)
    r = import_profiles_of(job)
    assert (r.users, r.generated, r.failed, r.not_in_dataset) == (2, 2, 0, 1)
    assert import_profiles_of(job).generated == 0  # a rerun imports nothing twice
    s = job_stats(job)
    assert s["profiles"] == 2 and s["model"] == "import:gpt-x (paper)" and s["flags"].get("empty") is None
    assert embed_profiles(job, encoder=LengthEncoder()).embedded == 2
    pv = export_vectors(job, encoder_id="test:length")
    assert pv.user_ids.tolist() == [1, 2] and pv.vectors[0, 0] == len("Loves dramas,\nand war films.")
    assert pv.meta["model"] == "import:gpt-x (paper)"
    # declared written from the leave-one-out training part: a ratio split holds some of those items in test
    with pytest.raises(LeakError):
        export_vectors(job, encoder_id="test:length", check_split=movie_ratio_split)
    # a changed file is another set of profiles
    f.write_text("uid,profile\n1,New text.\n2,Other.\n")
    assert import_profiles_of(job).generated == 2


@pytest.mark.parametrize("text, match", [
    ("uid,profile\n1,ok\n1,again\n", "line 3: id 1 appears a second time"),
    ('uid,profile\n1,ok\n2,"  "\n', "line 3: the text of id 2 is empty"),
    ("id,text\n1,ok\n", "no column \\['uid', 'profile'\\]"),
])
def test_bad_profile_files_name_the_row(tmp_path, csv_folder, text, match):
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=match):
        import_profiles_of(_job(tmp_path, csv_folder, f))


def test_import_from_jsonl_through_the_cli(tmp_path, csv_folder):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"uid": u, "profile": t}) for u, t in [(1, "Dramas."), (2, "Comedies.")]))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_job(tmp_path, csv_folder, tmp_path / "other.csv")))
    out = CliRunner().invoke(main, ["profiles", "import", str(job), "--file", str(f), "--source", "me"])
    assert out.exit_code == 0, out.output
    assert "imported now: 2" in out.output
    gen = CliRunner().invoke(main, ["profiles", "generate", str(job), "--set", f"backend.path={f}", "--set",
                                    "backend.source=me"])
    assert gen.exit_code == 0 and "already stored: 2" in gen.output  # generate with an import job imports too


def test_item_profiles_are_keyed_by_item_and_leak_checked_on_the_items_view(tmp_path, csv_folder, movie_dataset,
                                                                            movie_ratio_split):
    f = tmp_path / "items.csv"
    f.write_text("iid,profile\n10,For drama lovers.\n11,Light comedy fans.\n13,War drama readers.\n"
                 "14,Only ever a validation item.\n99,Not an item here.\n")
    job = {**_job(tmp_path, csv_folder, f, id_column="iid"), "entity": "item"}
    r = import_profiles_of(job)
    # leave-one-out training part: items 10, 11, 12, 13 have training interactions; 12 has no profile in the file,
    # 14 (validation only) and 99 have no training history
    assert (r.users, r.generated, r.failed, r.not_in_dataset) == (4, 3, 1, 2)
    assert embed_profiles(job, encoder=LengthEncoder()).embedded == 3
    pv = export_vectors(job, encoder_id="test:length")
    assert pv.user_ids.tolist() == [10, 11, 13] and pv.meta["entity"] == "item"
    (tmp_path / "items.yaml").write_text(yaml.safe_dump(job))
    out = CliRunner().invoke(main, ["profiles", "export", str(tmp_path / "items.yaml"), "--encoder", "test:length",
                                    "-o", str(tmp_path / "items.npz")])
    assert out.exit_code == 0 and ": 3 items x 3 dims (test:length)" in out.output, out.output
    assert pv.vectors[:, 0].tolist() == [len("For drama lovers."), len("Light comedy fans."), len("War drama readers.")]
    vecs, mask = pv.aligned(movie_dataset, "item")
    assert mask[movie_dataset.item_map.to_internal([10, 11, 12, 13])].tolist() == [True, True, False, True]
    # item 13 was written from user 1's interaction at t=130: training in leave-one-out, held out in this ratio split
    with pytest.raises(LeakError, match="item 13 was written from user 1.s interaction at timestamp 130"):
        export_vectors(job, encoder_id="test:length", check_split=movie_ratio_split)
    # user profiles of the same file and store are other records
    users = _job(tmp_path, csv_folder, f, id_column="iid")
    assert import_profiles_of(users).generated == 0  # ids 10.. are no users: nothing collides with the item rows


def test_item_profiles_need_an_import_backend():
    from llmkt.config.profiles import load_profiles_config
    from llmkt.errors import ConfigError

    with pytest.raises(ConfigError, match="entity: item needs backend.kind: import"):
        load_profiles_config({"entity": "item", "backend": {"kind": "template"}})
