"""Item metadata texts (the item-side source without an LLM): one text per titled item, untitled items left out."""

import pandas as pd
import pytest

from llmkt.data import Dataset
from llmkt.errors import DataError
from llmkt.profiles.items import item_texts

INTER = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "c", "a"],
                      "timestamp": [1, 2, 3, 4]})


def test_item_texts_join_title_year_genres_and_leave_out_untitled_items():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["Heat", "  ", None], "year": [1995, 1990, 2000],
                          "genres": ["Action|Crime", "Drama", ""]})
    ids, texts = item_texts(Dataset.from_frames(INTER, items, name="t"))
    assert ids.tolist() == ["a"] and texts == ["Heat (1995). Genres: Action, Crime."]


def test_item_texts_refuse_a_catalogue_without_any_title():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["", " ", ""]})
    with pytest.raises(DataError, match="every item title is empty"):
        item_texts(Dataset.from_frames(INTER, items, name="t"))
    with pytest.raises(DataError, match="has no item titles"):
        item_texts(Dataset.from_frames(INTER, name="t"))
