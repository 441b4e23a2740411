"""Serving without an LLM: exported models (``exported``) and the HTTP API (``app``, FastAPI, optional extra
``serve``). Nothing here imports llmkt's training, transfer, profile or experiment code."""

from llmkt.serving.exported import ExportedModel, load_exported

__all__ = ["ExportedModel", "load_exported"]
