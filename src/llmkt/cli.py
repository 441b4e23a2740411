"""Command line: ``llmkt train``, ``evaluate``, ``datasets``, ``config-schema``, ``inspect-model``, ``profiles ...``,
``weights ...``.

Each command is a thin wrapper over the Python API of the same name (``llmkt.train`` ...).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from llmkt.errors import LLMKTError, LLMKTWarning


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if issubclass(category, LLMKTWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


class Group(click.Group):
    """Every error llmkt raises on purpose (bad config, bad data, a failed backend) ends a command with one
    ``error:`` line on stderr and exit code 2, never a traceback; an unexpected exception still shows one (a bug
    to report)."""

    def invoke(self, ctx: click.Context):
        previous = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except LLMKTError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            click.echo(f"error: {e.filename}: {e.strerror}; check the path and its permissions.", err=True)
            ctx.exit(2)
        finally:
            warnings.showwarning = previous


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmkt")
def main() -> None:
    """llmkt: transfer knowledge from LLMs into recommender models."""


@main.command()
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
            _fail(LLMKTError(f"--resume {resume}: {run} is not a run folder (no config.yaml); pass the folder "
                             "`llmkt train` printed."))
        config = str(run / "config.yaml")
    if not config and not defaults:
        _fail(LLMKTError("llmkt train needs a CONFIG file, e.g. `llmkt train configs/sasrec_ml100k.yaml` (the "
                         "configs/ folder has examples); `llmkt train --defaults` runs the built-in default "
                         "(SASRec on ml-100k, 20 epochs, a few minutes on a CPU)."))
    res = run_train(config, ov, resume_from=resume) if config else run_train({}, ov, resume_from=resume)
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


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--stage", type=click.Choice(["valid", "test"]), default="test")
@click.option("--allow-unfinished", is_flag=True, help="evaluate the best checkpoint of a run that did not finish")
def evaluate(run_dir: str, stage: str, allow_unfinished: bool) -> None:
    """Evaluate the best checkpoint of RUN_DIR on its split."""
    from llmkt.experiments.evaluate import evaluate_run

    res = evaluate_run(run_dir, stage, allow_unfinished=allow_unfinished)
    click.echo(f"protocol: {res.protocol}")
    click.echo(f"{stage}: {_format_metrics(res.metrics)}")


@main.command()
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


@main.command("inspect-model")
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--n-items", type=int, default=100, show_default=True,
              help="catalogue size for the dry run (shapes do not depend on it except the output layer)")
def inspect_model(config: str | None, overrides: tuple[str, ...], n_items: int) -> None:
    """Print the model's layer names, types and output shapes (targets for transfer.layer)."""
    from llmkt.config import load_config
    from llmkt.models.registry import build_model
    from llmkt.transfer.layers import output_shapes
    from llmkt.transfer.setup import default_layer

    try:
        cfg = load_config(config, list(overrides))
    except LLMKTError as e:
        _fail(e)
        return
    import torch

    if cfg.model.name == "kar":
        _fail(ValueError("inspect-model: KAR wraps its backbone; inspect the backbone (model.backbone) instead."))
        return
    model = build_model(cfg.model, n_items, n_users=10)
    if model.kind == "ctr":
        batch = {"uid": torch.tensor([1, 2]), "iid": torch.tensor([3, 4]), "label": torch.tensor([1.0, 0.0])}
        what = "(user, item) rows with side features: none in a dry run"
    elif model.kind == "user_rows":
        batch = {"uid": torch.tensor([1, 2]), "items": (torch.rand(2, n_items + 1) < 0.1).float()}
        what = "user rows"
    elif model.kind == "pairs":
        batch = {"uid": torch.tensor([1, 2]), "pos": torch.tensor([3, 4]),
                 "neg": torch.randint(1, n_items + 1, (2, model.n_negatives))}
        if model.hist_len:
            batch["hist"] = torch.randint(0, n_items + 1, (2, model.hist_len))
        what = f"pairs with {model.n_negatives} negatives"
    else:
        length = model.max_len
        batch = {"uid": torch.tensor([1, 2]), "seq": torch.randint(1, n_items + 1, (2, length + 1))}
        what = f"sequence length {length}"
    shapes = output_shapes(model, lambda: model.loss(batch))
    modules = dict(model.named_modules())
    click.echo(f"{type(model).__name__} (dry run: batch of 2, {what}, {n_items} items)")
    click.echo(f"default transfer layer: {default_layer(model)}")
    for name, module in modules.items():
        if name:
            shape = shapes.get(name, "not called by its own forward on the training path")
            click.echo(f"  {name:32s} {type(module).__name__:22s} {shape}")


@main.command("config-schema")
@click.argument("kind", type=click.Choice(["run", "profiles"]), default="run")
def config_schema(kind: str) -> None:
    """Print the JSON schema of a config KIND: run (llmkt train, the default) or profiles (llmkt profiles ...):
    every key, its type, default and description."""
    if kind == "profiles":
        from llmkt.profiles.config import ProfilesConfig as cls
    else:
        from llmkt.config import RunConfig as cls

    click.echo(json.dumps(cls.model_json_schema(), indent=1))


def _register() -> None:
    from llmkt.cli_profiles import profiles, weights

    main.add_command(profiles)
    main.add_command(weights)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
