"""`mcarun`: Edit latents with an engine bundle and benchmark backends."""

from __future__ import annotations

import click

from mcaclip import __version__
from mcaclip.cli import run_cli


@click.group(name="mcarun", help="Edit latents with an engine bundle and benchmark backends.")
@click.version_option(__version__, prog_name="mcarun")
def cli() -> None:
    pass


def main() -> None:
    run_cli(cli)
