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

# The public API is loaded on first use: `import llmkt.data` (or any submodule) does not pull in torch and the
# whole runner, and each submodule imports on its own (tests/test_architecture.py).
_API = {"RunConfig": "llmkt.config", "load_config": "llmkt.config", "evaluate_run": "llmkt.experiments.evaluate",
        "RunResult": "llmkt.experiments.runner", "train": "llmkt.experiments.runner",
        "export_run": "llmkt.experiments.export", "load_exported": "llmkt.serving.exported"}

__all__ = ["RunConfig", "RunResult", "__version__", "evaluate_run", "export_run", "load_config", "load_exported",
           "train"]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmkt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
