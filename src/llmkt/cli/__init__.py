"""Command line: ``llmkt train``, ``evaluate``, ``datasets``, ``config-schema``, ``inspect-model`` (``cli/run.py``),
``profiles ...``, ``weights ...`` (``cli/profiles.py``), ``export``, ``serve`` (``cli/serve.py``).

Each command is a thin wrapper over the ``llmkt.experiments`` function of the same name; one error handler
(:class:`Group`) turns every error llmkt raises on purpose into one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import warnings

import click

from llmkt.errors import LLMKTError, LLMKTWarning


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
        except KeyboardInterrupt:
            click.echo("interrupted: finished work is stored; rerun the same command to resume.", err=True)
            ctx.exit(130)
        finally:
            warnings.showwarning = previous


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmkt")
def main() -> None:
    """llmkt: transfer knowledge from LLMs into recommender models."""


def _register() -> None:
    from llmkt.cli.allmrec import allmrec
    from llmkt.cli.baseline import baseline
    from llmkt.cli.profiles import profiles, weights
    from llmkt.cli.run import config_schema, datasets, evaluate, inspect_model, train
    from llmkt.cli.serve import export, serve
    from llmkt.cli.study import study

    for command in (train, evaluate, datasets, inspect_model, config_schema, study, profiles, weights, baseline,
                    allmrec, export, serve):
        main.add_command(command)


_register()
