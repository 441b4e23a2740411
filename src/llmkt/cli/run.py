"""``llmkt train``, ``evaluate``, ``datasets``, ``inspect-model``, ``config-schema``: wrappers over
``llmkt.experiments``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llmkt.errors import ConfigError


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())


@click.command()
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config value, e.g. --set training.epochs=5 (repeatable)")
@click.option("--data-dir", default=None, help="data home (else data.data_dir, $LLMKT_DATA, ~/.cache/llmkt/data)")
@click.option("--resume", default=None, type=click.Path(), help="resume from a run folder or its last.pt")
@click.option("--download", is_flag=True, help="download a missing MovieLens archive (same as --set data.download=true)")
@click.option("--defaults", is_flag=True, help="run the built-in default config (SASRec on ml-100k, 20 epochs)")
@click.option("--json-out", is_flag=True, help="print the results as JSON")
def train(config: str | None, overrides: tuple[str, ...], data_dir: str | None, resume: str | None,
          download: bool, defaults: bool, json_out: bool) -> None:
    """Train and evaluate a model from a YAML CONFIG (e.g. configs/sasrec_ml100k.yaml), or continue one with
    --resume RUN_DIR."""
    from llmkt.experiments.runner import train as run_train

    ov = list(overrides)
    if data_dir:
        ov.append(f"data.data_dir={data_dir}")
    if download:
        ov.append("data.download=true")
    if resume and not config:
        run = Path(resume) if Path(resume).is_dir() else Path(resume).parent
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"--resume {resume}: {run} is not a run folder (no config.yaml); pass the folder "
                              "`llmkt train` printed.")
        config = str(run / "config.yaml")
    if not config and not defaults:
        raise ConfigError("llmkt train needs a CONFIG file, e.g. `llmkt train configs/sasrec_ml100k.yaml` (the "
                          "configs/ folder has examples); `llmkt train --defaults` runs the built-in default "
                          "(SASRec on ml-100k, 20 epochs, a few minutes on a CPU).")
    res = run_train(config, ov, resume_from=resume) if config else run_train({}, ov, resume_from=resume)
    if res is None:  # a rank other than 0 of `torchrun ... -m llmkt train`: rank 0 reports
        return
    if json_out:
        click.echo(json.dumps(res.summary(), indent=2))
        return
    click.echo(f"run: {res.run_dir}  (best epoch {res.best_epoch}, median {res.timings['median_epoch_s']:.2f} s/epoch)")
    click.echo(f"protocol: {res.test.protocol}")
    if res.transfer is not None:
        info = res.transfer
        click.echo(f"transfer: layer {info['layer']} (width {info['layer_width']}), vectors {info['vector_dim_in']}"
                   f" -> {info['vector_dim']} ({info['reducer']}), coverage {info['coverage']:.1%}")
    if res.base is not None:
        click.echo(f"base  valid: {_format_metrics(res.base.valid.metrics)}")
        click.echo(f"base  test:  {_format_metrics(res.base.test.metrics)}")
        diff = res.summary()["paired_vs_base"].get("NDCG@10")
        if diff:
            click.echo(f"transfer - base, test NDCG@10: {diff['diff']:+.4f} (paired t-test p={diff['t_pvalue']:.3g}, "
                       f"Wilcoxon p={diff['wilcoxon_pvalue']:.3g}, {diff['n_users']} users)")
    label = "transfer" if res.transfer is not None else ""
    click.echo(f"{label + ' ' if label else ''}valid: {_format_metrics(res.valid.metrics)}")
    click.echo(f"{label + ' ' if label else ''}test:  {_format_metrics(res.test.metrics)}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--stage", type=click.Choice(["valid", "test"]), default="test")
@click.option("--allow-unfinished", is_flag=True, help="evaluate the best checkpoint of a run that did not finish")
def evaluate(run_dir: str, stage: str, allow_unfinished: bool) -> None:
    """Evaluate the best checkpoint of RUN_DIR on its split."""
    from llmkt.experiments.evaluate import evaluate_run

    res = evaluate_run(run_dir, stage, allow_unfinished=allow_unfinished)
    click.echo(f"protocol: {res.protocol}")
    click.echo(f"{stage}: {_format_metrics(res.metrics)}")


@click.command()
@click.option("--data-dir", default=None)
@click.option("--stats", is_flag=True, help="load each dataset found and print its size")
def datasets(data_dir: str | None, stats: bool) -> None:
    """List the datasets llmkt can load and whether their files are present."""
    from llmkt.data import Dataset, available_datasets, load_raw, preprocess
    from llmkt.data.loaders import default_data_dir

    base = Path(data_dir) if data_dir else default_data_dir()
    click.echo(f"data home: {base}")
    for name in available_datasets():
        present = (base / name).exists()
        line = f"  {name:15s} {'found' if present else 'missing'}"
        if stats and present and name != "csv":
            raw = load_raw(name, base)
            line += f"  {Dataset.from_frames(preprocess(raw.interactions), name=name)!r}"
        click.echo(line)


@click.command("inspect-model")
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--n-items", type=int, default=100, show_default=True,
              help="catalogue size for the dry run (shapes do not depend on it except the output layer)")
def inspect_model(config: str | None, overrides: tuple[str, ...], n_items: int) -> None:
    """Print the model's layer names, types and output shapes (targets for transfer.layer)."""
    from llmkt.config import load_config
    from llmkt.experiments.inspect import inspect_model as run_inspect

    r = run_inspect(load_config(config, list(overrides)), n_items)
    click.echo(f"{r.model} (dry run: batch of 2, {r.batch}, {n_items} items)")
    click.echo(f"default transfer layer: {r.default_layer}")
    for name, kind, shape in r.layers:
        click.echo(f"  {name:32s} {kind:22s} {shape}")


@click.command("config-schema")
@click.argument("kind", type=click.Choice(["run", "profiles", "study"]), default="run")
def config_schema(kind: str) -> None:
    """Print the JSON schema of a config KIND: run (llmkt train, the default), profiles (llmkt profiles ...) or
    study (llmkt study ...): every key, its type, default and description."""
    if kind == "profiles":
        from llmkt.config.profiles import ProfilesConfig as cls
    elif kind == "study":
        from llmkt.config.study import StudyConfig as cls
    else:
        from llmkt.config import RunConfig as cls

    click.echo(json.dumps(cls.model_json_schema(), indent=1))


