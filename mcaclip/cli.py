"""What the three CLIs share: one-line errors with exit code 2, logging set-up."""

from __future__ import annotations

import logging
import sys
import warnings

import click

from mcaclip.errors import McaError


def run_cli(group: click.Group) -> None:
    """Run ``group``; an :class:`McaError` becomes ``error: <message>`` and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mcaclip").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit.*")
    try:
        group.main(standalone_mode=False)
    except McaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
