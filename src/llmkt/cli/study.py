"""``llmkt study run | report | status``: wrappers over ``llmkt.experiments.study`` and ``experiments.report``."""

from __future__ import annotations

import json

import click

_SPEC = click.argument("spec", type=click.Path(dir_okay=False))
_SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="override a study-spec value, e.g. --set seeds=[1] (repeatable)")
_STORAGE = click.option("--storage", default=None, help="Optuna storage URL (sqlite:///..., postgresql://..., "
                                                        "journal:PATH); default: the spec's, else SQLite in the "
                                                        "study folder")


@click.group("study")
def study() -> None:
    """Grids x vectors variants x seeds on Optuna, chosen on validation, reported with significance
    (docs/studies.md)."""


@study.command()
@_SPEC
@_SET
@_STORAGE
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes on this machine")
@click.option("--no-report", is_flag=True, help="do not write the report when the study is complete")
def run(spec: str, overrides: tuple[str, ...], storage: str | None, workers: int, no_report: bool) -> None:
    """Check SPEC, enqueue its missing cells and run them; other machines may join with --storage."""
    from llmkt.experiments.study import run_study

    r = run_study(spec, list(overrides), workers=workers, storage=storage)
    click.echo(f"study {r.study}: {r.complete}/{r.cells} cells finished ({r.ran} now, {r.enqueued} enqueued now"
               f"{', ' + str(len(r.reaped)) + ' stale re-run' if r.reaped else ''}) in {r.seconds:.0f} s; "
               f"storage {r.storage}")
    for e in r.failed[:5]:
        click.echo(f"  failed: {e}", err=True)
    if r.complete == r.cells and not no_report:
        from llmkt.experiments.report import build_report

        paths = build_report(spec, list(overrides), storage)
        click.echo(paths.markdown.read_text().split("\n\n")[2])
        click.echo(f"report: {paths.markdown} and {paths.html}")
        _serve_hint(paths)
    elif r.failed:
        raise SystemExit(1)


@study.command()
@_SPEC
@_SET
@_STORAGE
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False), help="report folder "
                                                                                  "(default: STUDY/report)")
def report(spec: str, overrides: tuple[str, ...], storage: str | None, out: str | None) -> None:
    """Choose on validation, test the chosen points, write report.md and report.html."""
    from llmkt.experiments.report import build_report

    paths = build_report(spec, list(overrides), storage, out)
    click.echo(paths.markdown.read_text().split("\n\n")[2])
    click.echo(f"report: {paths.markdown} and {paths.html}")
    _serve_hint(paths)


def _serve_hint(paths) -> None:
    """The last lines of a finished study: how to serve the model chosen on validation (docs/serving.md)."""
    for what, run_dir in paths.serve:
        name = run_dir.parent.parent.name + (f"-{run_dir.name}" if len(paths.serve) > 1 else "")
        click.echo(f"serve the model chosen on validation ({what}):")
        click.echo(f"  llmkt export {run_dir} -o exports/{name} && llmkt serve exports/{name}")


@study.command()
@_SPEC
@_SET
@_STORAGE
def status(spec: str, overrides: tuple[str, ...], storage: str | None) -> None:
    """How many cells are finished and running."""
    from llmkt.experiments.study import open_study, status as study_status

    click.echo(json.dumps(study_status(open_study(spec, list(overrides), storage, create=False)), indent=1))
