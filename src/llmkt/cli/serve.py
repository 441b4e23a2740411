"""``llmkt export`` and ``llmkt serve``: wrappers over ``llmkt.experiments.export`` and ``llmkt.serving``."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="export folder to write")
@click.option("--history", type=click.Choice(["all", "test"]), default="all", show_default=True,
              help="what known users are scored from: every interaction, or the run's test-time history")
@click.option("--overwrite", is_flag=True, help="write into a non-empty folder")
def export(run_dir: str, out: str, history: str, overwrite: bool) -> None:
    """Export the best checkpoint of RUN_DIR (safetensors weights, model config, id maps, histories, catalogue)
    for `llmkt serve` and `llmkt.load_exported`."""
    from llmkt.experiments.export import export_run

    path = export_run(run_dir, out, history=history, overwrite=overwrite)
    click.echo(f"exported: {path}")
    click.echo(f"serve it: llmkt serve {path}")


@click.command("serve")
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--max-batch", default=64, show_default=True, type=int, help="requests scored in one batch at most")
@click.option("--max-wait-ms", default=2.0, show_default=True, type=float,
              help="how long the first request of a batch waits for others")
@click.option("--threads", default=None, type=int, help="torch threads for scoring (default: torch's)")
@click.option("--log-level", default="info", show_default=True)
def serve(export_dir: str, host: str, port: int, max_batch: int, max_wait_ms: float, threads: int | None,
          log_level: str) -> None:
    """Serve an export folder over HTTP (FastAPI + uvicorn; OpenAPI docs at /docs)."""
    from llmkt.serving.app import serve as run_server

    run_server(export_dir, host, port, max_batch, max_wait_ms, threads, log_level)
