"""`mcaexport`: Export editors to ONNX graphs and engine bundles."""

from __future__ import annotations

import click

from mcaclip import __version__
from mcaclip.cli import run_cli


@click.group(name="mcaexport", help="Export editors to ONNX graphs and engine bundles.")
@click.version_option(__version__, prog_name="mcaexport")
def cli() -> None:
    pass


def main() -> None:
    run_cli(cli)
