"""llmkt: transfer knowledge from large language models into recommender models.

Python API (mirrors the CLI)::

    import llmkt
    result = llmkt.train("configs/sasrec_ml100k.yaml", overrides=["training.epochs=2"])
    print(result.test.metrics)
"""

import os as _os

# Before torch loads: OpenMP threads that spin while waiting slowed kernels up to 100x when two jobs shared this
# project's 2-core machines. An explicit setting by the user wins (docs/decisions.md).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from llmkt.config import RunConfig, load_config  # noqa: E402
from llmkt.experiments.evaluate import evaluate_run  # noqa: E402
from llmkt.experiments.runner import RunResult, train  # noqa: E402

__all__ = ["RunConfig", "RunResult", "__version__", "evaluate_run", "load_config", "train"]
