import subprocess
import sys

import click
import pytest

from mcaclip.cli import run_cli
from mcaclip.errors import CheckpointError


@pytest.mark.parametrize("module", ["training", "export", "runtime"])
def test_entry_points_answer(module):
    out = subprocess.run(
        [sys.executable, "-c", f"from mcaclip.{module}.cli import main; main()", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "version 0.1.0" in out.stdout


def test_mca_errors_become_one_line_and_exit_2(monkeypatch, capsys):
    @click.group()
    def cli():
        pass

    @cli.command()
    def boom():
        raise CheckpointError("g.pt: file not found")

    monkeypatch.setattr(sys, "argv", ["prog", "boom"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(cli)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: g.pt: file not found\n"
