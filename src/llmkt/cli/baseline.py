"""``llmkt baseline text|popularity``: wrappers over ``llmkt.experiments.baselines``."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("baseline")
def baseline() -> None:
    """Baselines in the same evaluator (docs/evaluation.md)."""


@baseline.command()
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False),
              help="a finished run folder: its split, and the ensemble of its model with the text")
@click.option("--config", default=None, type=click.Path(dir_okay=False), help="a run config (text only, no model)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="overrides of --config")
@click.option("--users", "user_vectors", required=True,
              help="user vectors: a vectors file, or a profile-job YAML (its store, leak-checked)")
@click.option("--items", "item_vectors", required=True,
              help="item vectors: a vectors file, or an item profile-job YAML (entity: item)")
@click.option("--weights", default=None, help="ensemble weights to choose from on validation, e.g. 0,0.1,0.5,1")
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="write the summary as JSON here")
def text(run_dir: str | None, config: str | None, overrides: tuple[str, ...], user_vectors: str, item_vectors: str,
         weights: str | None, out: str | None) -> None:
    """Rank by the cosine of user and item profile vectors; with --run also the score-sum ensemble of the run's
    model and the text, its weight chosen on validation."""
    from llmkt.errors import ConfigError
    from llmkt.experiments.baselines import WEIGHTS, text_baselines

    try:
        ws = tuple(float(w) for w in weights.split(",")) if weights else WEIGHTS
    except ValueError:
        raise ConfigError(f"--weights: expected numbers separated by commas, got {weights!r}.") from None
    r = text_baselines(user_vectors, item_vectors, run_dir=run_dir, config=config, overrides=list(overrides),
                       weights=ws)
    m = r.metric
    click.echo(f"text only: valid {m} {r.text['valid'].metrics[m]:.4f}, test {r.text['test'].metrics[m]:.4f} "
               f"(users with a vector {r.info['user_coverage']:.1%}, items {r.info['item_coverage']:.1%})")
    if r.model:
        click.echo(f"model alone: test {m} {r.model['test'].metrics[m]:.4f}")
        click.echo(f"ensemble: weight {r.weight:g} chosen on validation "
                   f"({', '.join(f'{w:g}: {v:.4f}' for w, v in r.curve.items())}); test {m} "
                   f"{r.ensemble.metrics[m]:.4f}")
    if out:
        Path(out).write_text(json.dumps(r.summary(), indent=1, default=str))
        click.echo(f"summary: {out}")


@baseline.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="overrides of CONFIG")
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="write the metrics as JSON here")
def popularity(config: str, overrides: tuple[str, ...], out: str | None) -> None:
    """Rank unseen items by training popularity on CONFIG's data, split and metrics (the floor for every model)."""
    from llmkt.experiments.baselines import popularity_baseline

    r = popularity_baseline(config, list(overrides))
    for stage, res in r.items():
        click.echo(f"popularity {stage} [{res.protocol}]: " + ", ".join(f"{k} {v:.4f}" for k, v in res.metrics.items()))
    if out:
        Path(out).write_text(json.dumps({s: {"protocol": res.protocol, "metrics": res.metrics} for s, res in r.items()},
                                        indent=1))
        click.echo(f"metrics: {out}")
