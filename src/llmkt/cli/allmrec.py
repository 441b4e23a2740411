"""``llmkt allmrec train|evaluate|generate CONFIG``: wrappers over ``llmkt.experiments.allmrec``."""

from __future__ import annotations

import click


@click.group("allmrec")
def allmrec() -> None:
    """A-LLMRec: a frozen CF model's item embeddings aligned with item text, soft prompts into a frozen LLM
    (docs/allmrec.md)."""


_config = click.argument("config", type=click.Path(dir_okay=False))
_set = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="overrides of CONFIG")


@allmrec.command()
@_config
@_set
def train(config: str, overrides: tuple[str, ...]) -> None:
    """Stage 1 (alignment) then stage 2 (projections into the LLM); resumable: rerun to continue."""
    from llmkt.experiments.allmrec import train as run

    r = run(config, list(overrides))
    s1, s2 = r.stage1[-1], r.stage2[-1]
    click.echo(f"stage 1: {len(r.stage1)} epochs, last loss {s1['total']:.4f} ({s1['seconds']:.0f} s/epoch)")
    click.echo(f"stage 2: {len(r.stage2)} epochs, last loss {s2['loss']:.4f} ({s2['seconds']:.0f} s/epoch, "
               f"{s2['examples']} users)")
    click.echo(f"frozen CF model and LLM unchanged (sha256 {r.hashes['cf_model'][:12]}, {r.hashes['llm'][:12]})")
    click.echo(f"job folder: {r.folder}")


@allmrec.command()
@_config
@_set
def evaluate(config: str, overrides: tuple[str, ...]) -> None:
    """Hit@1 over the stored candidate sets: frozen CF model, A-LLMRec, LLM-only; cold/warm slices."""
    from llmkt.experiments.allmrec import evaluate as run

    res = run(config, list(overrides))
    click.echo(f"Hit@1 over {res['n_users']} users x {res['n_candidates']} candidates ({res['stage']}):")
    for name, m in res["models"].items():
        extra = f", unparseable {m['unparseable_share']:.1%}" if name in ("allmrec", "llm_only") else ""
        click.echo(f"  {name:<24} {m['Hit@1']:.4f}{extra}")
    for name, row in res["slices"].items():
        vals = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "n" and v is not None)
        click.echo(f"  [{name}, n={row['n']}] {vals}")


@allmrec.command()
@_config
@_set
def generate(config: str, overrides: tuple[str, ...]) -> None:
    """Language generation: the LLM describes users' taste from their soft prompt (generations.csv)."""
    from llmkt.experiments.allmrec import generate as run

    frame = run(config, list(overrides))
    for rec in frame.head(5).itertuples(index=False):
        click.echo(f"{rec.user_id}: {rec.generation}")
    click.echo(f"{len(frame)} generations written")
