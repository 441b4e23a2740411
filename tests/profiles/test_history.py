import pytest

from llmkt.profiles.history import (LeakError, check_leak_free, detect_domain, history_hash, training_histories,
                                    user_key)


def test_training_histories_hold_only_training_rows_in_time_order(movie_split):
    hs = training_histories(movie_split)
    assert [h.user_id for h in hs] == [1, 2]
    h1, h2 = hs
    # leave-one-out: the last two interactions of each user are valid/test
    assert h1.items["item_id"].tolist() == [10, 11, 12, 13]
    assert h2.items["item_id"].tolist() == [11, 13]
    assert h1.items["title"].tolist() == ["Alpha", "Beta", "Gamma", "Delta"]
    assert h1.cutoff == (130, 3)
    assert h1.keys()[0] == [10, 100, 0]


def test_history_hash_is_stable_and_order_sensitive(movie_split):
    h = training_histories(movie_split)[0]
    keys = h.keys()
    assert history_hash(keys) == history_hash([list(k) for k in keys])
    assert history_hash(keys) != history_hash(keys[::-1])
    assert user_key(1) != user_key("1")


def test_unknown_user_ids_are_named(movie_split):
    from llmkt.errors import DataError

    with pytest.raises(DataError, match=r"unknown user id\(s\) \[99\]"):
        training_histories(movie_split, users=[1, 99])


def test_leak_check_accepts_training_histories(movie_split):
    hs = training_histories(movie_split)
    check_leak_free([(h.user_id, h.keys()) for h in hs], movie_split)


def test_profile_that_saw_a_test_interaction_is_refused(movie_split):
    h = training_histories(movie_split)[0]
    test_row = movie_split.test[movie_split.test["user_id"] == 1].iloc[0]
    leaked = h.keys() + [[int(test_row["item_id"]), int(test_row["timestamp"]), int(test_row["order"])]]
    with pytest.raises(LeakError, match=r"user 1 saw item 15 at timestamp 150, which is in the test part"):
        check_leak_free([(1, leaked)], movie_split)


def test_profiles_from_another_split_are_refused(movie_split, movie_ratio_split):
    # The leave-one-out training part of user 1 includes item 13, which the 50/25/25 ratio split holds out.
    hs = training_histories(movie_split)
    with pytest.raises(LeakError, match="validation part|test part"):
        check_leak_free([(h.user_id, h.keys()) for h in hs], movie_ratio_split)


def test_domain_detection(movie_dataset):
    assert detect_domain(movie_dataset.items) == "movie"
    assert detect_domain(movie_dataset.items.drop(columns=["genres", "year"])) == "product"
    assert detect_domain(None) == "generic"
