import os

# Before torch loads: spin-waiting OpenMP threads slow everything down when two jobs share 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMKT_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the real datasets; tests that need it are skipped when absent unless CI requires it."""
    if not (SHARED / "ml-100k" / "u.data").exists():
        if os.environ.get("LLMKT_REQUIRE_REAL_DATA"):
            pytest.fail(f"real data required (LLMKT_REQUIRE_REAL_DATA) but not found in {SHARED}")
        pytest.skip(f"real data not found in {SHARED}")
    return SHARED


@pytest.fixture
def tiny_interactions() -> pd.DataFrame:
    """3 users with known histories; timestamps have a tie for user 'a' (file order must break it)."""
    rows = [
        ("a", "x", 5, 10), ("a", "y", 3, 20), ("a", "z", 4, 20), ("a", "w", 1, 30), ("a", "v", 5, 40),
        ("b", "x", 4, 15), ("b", "y", 2, 25), ("b", "w", 5, 35), ("b", "u", 4, 45),
        ("c", "z", 3, 12), ("c", "x", 4, 22), ("c", "v", 5, 32),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture
def tiny_dataset(tiny_interactions):
    from llmkt.data import Dataset

    return Dataset.from_frames(tiny_interactions)


def random_interactions(n_users: int = 30, n_items: int = 40, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        ts = np.sort(rng.integers(0, 1000, size=per_user))
        rows += [(f"u{u}", f"i{i}", int(rng.integers(1, 6)), int(t)) for i, t in zip(items, ts)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
