"""`mcatrain`: Train MCA-CLIP editors (the trainer arrives with the training issue)."""

from __future__ import annotations

import click

from mcaclip import __version__
from mcaclip.cli import run_cli


@click.group(
    name="mcatrain", help="Train MCA-CLIP editors (the trainer arrives with the training issue)."
)
@click.version_option(__version__, prog_name="mcatrain")
def cli() -> None:
    pass


def main() -> None:
    run_cli(cli)
