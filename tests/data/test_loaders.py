import pandas as pd
import pytest

from llmkt.data import Dataset, load_raw, preprocess
from llmkt.data.loaders import DatasetNotFoundError
from llmkt.errors import DataError
from tests.conftest import REPO


def test_unknown_dataset_name_lists_available():
    with pytest.raises(DataError, match=r"unknown dataset 'ml-20k'; available: "
                                        r"\['amazon-beauty', 'amazon-book-rlmrec', 'csv'"):
        load_raw("ml-20k", "/tmp")


def test_offline_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_raw("ml-1m", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "ml-1m") in msg and "ratings.dat" in msg and "download" in msg


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "ml-100k")):
        load_raw("ml-100k")


def test_csv_folder(tmp_path):
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 3]}).to_csv(
        tmp_path / "interactions.csv", index=False)
    pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}).to_csv(tmp_path / "items.csv", index=False)
    raw = load_raw("csv", path=tmp_path)
    ds = Dataset.from_frames(raw.interactions, raw.items)
    assert ds.n_users == 2 and ds.n_items == 2 and ds.items["title"].tolist() == ["A", "B"]
    with pytest.raises(DataError, match="data.path"):
        load_raw("csv", tmp_path)


def test_csv_with_wrong_columns_is_rejected(tmp_path):
    pd.DataFrame({"user": [1], "item": [2]}).to_csv(tmp_path / "interactions.csv", index=False)
    with pytest.raises(DataError, match=r"interactions.csv: no column 'user_id', 'item_id' in the header; the "
                                        r"header has \['user', 'item'\]"):
        load_raw("csv", path=tmp_path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['user_id', 'item_id'\]"):  # frames from Python
        Dataset.from_frames(pd.DataFrame({"user": [1], "item": [2]}))


def test_ml_100k_official_files(shared_data):
    raw = load_raw("ml-100k", shared_data)
    assert len(raw.interactions) == 100_000
    ds = Dataset.from_frames(preprocess(raw.interactions), raw.items, raw.users, "ml-100k")
    assert (ds.n_users, ds.n_items) == (943, 1682)
    toy = ds.items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story" and toy["year"] == 1995 and toy["genres"] == "Animation|Children's|Comedy"


def test_ml_1m_half_and_beauty(shared_data):
    raw = load_raw("ml-1m-half", shared_data)
    assert len(raw.interactions) == 487_515 and raw.interactions["user_id"].nunique() == 2998
    assert raw.items.set_index("item_id").loc[1, "genres"] == "Animation|Children's|Comedy"
    beauty = load_raw("amazon-beauty", shared_data)
    assert len(beauty.interactions) == 198_502
    assert not beauty.items["title"].str.contains("&amp;").any()


def test_k_core_and_threshold_on_real_data(shared_data):
    raw = load_raw("ml-100k", shared_data)
    df = preprocess(raw.interactions, min_rating=4, min_user_interactions=10, min_item_interactions=10)
    assert df["rating"].min() >= 4
    assert df["user_id"].value_counts().min() >= 10 and df["item_id"].value_counts().min() >= 10


def test_amazon_book_rlmrec_with_its_given_split(shared_data):
    if not (shared_data / "amazon-book-rlmrec" / "train.tsv").exists():
        pytest.skip("amazon-book-rlmrec not in the shared data")
    from llmkt.config import validate_config
    from llmkt.experiments.inputs import load_dataset, split_dataset

    cfg = validate_config({"data": {"name": "amazon-book-rlmrec", "data_dir": str(shared_data)},
                           "split": {"kind": "given", "train": "{data}/train.tsv", "valid": "{data}/valid.tsv",
                                     "test": "{data}/test.tsv"}})
    ds = load_dataset(cfg)
    assert (ds.n_users, ds.n_items, len(ds)) == (11000, 9332, 200860)
    assert ds.items["text"].str.len().gt(0).all()  # every book has its GPT-3.5 profile as text
    s = split_dataset(cfg, ds)
    # the README's figures: 120,464 / 40,290 / 40,106 rows; 9,857 users with validation and 9,860 with test items
    assert (len(s.train), len(s.valid), len(s.test)) == (120464, 40290, 40106)
    assert (s.valid["uid"].nunique(), s.test["uid"].nunique()) == (9857, 9860)
    assert s.params["sha256"]["train"] == "00762c0ecab714dd"


def test_the_rlmrec_profiles_import_and_pass_the_leak_check(shared_data, tmp_path):
    if not (shared_data / "amazon-book-rlmrec" / "user_profiles.csv").exists():
        pytest.skip("amazon-book-rlmrec not in the shared data")
    from llmkt.experiments.profiles import import_profiles_of, job_profiles

    over = [f"data.data_dir={shared_data}", f"store={tmp_path / 's.sqlite'}", "users.limit=40", "progress=false"]
    r = import_profiles_of(REPO / "configs" / "profiles_amazon_book_import.yaml", over)
    assert (r.users, r.generated, r.failed) == (40, 40, 0)
    recs = job_profiles(REPO / "configs" / "profiles_amazon_book_import.yaml", over)
    assert recs[0].model_id == "import:gpt-3.5-turbo (RLMRec)" and recs[0].text.startswith("This user enjoys")
