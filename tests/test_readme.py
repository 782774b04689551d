"""README.md: its ```bash runnable``` blocks run on a CPU with no weights and no network and write
what they promise; every relative link of README.md and docs/*.md resolves; it stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 400
RUNNABLE = "bash runnable"

# Commands the README's runnable blocks must hold, and the files each one promises (relative
# to the directory the blocks run in).
PROMISED = {
    'mcarun edit --prompt "blue goatee" --seeds 0-7 --grid --out out/': [
        "out/grid.png",
        "out/00000_original.png",
        "out/00000_blue-goatee.png",
        "out/00000_blue-goatee_mask.png",
        "out/00007_blue-goatee.png",
    ],
    'mcarun edit --images out/00000_original.png --prompt "blue goatee" --out photo_out/': [
        "photo_out/00000_original_aligned.png",
        "photo_out/00000_original_inversion.png",
        "photo_out/00000_original_blue-goatee.png",
    ],
    "mcarun edit --images docs/toy_photo.png --prompt"
    ' "blue goatee" --paste-back --out photo_out/': [
        "photo_out/toy_photo_aligned.png",
        "photo_out/toy_photo_blue-goatee.png",
        "photo_out/toy_photo_blue-goatee_pasted.png",
    ],
}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(info string, lines) of every ``` fenced block, in order."""
    blocks, info, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip(), []
            else:
                blocks.append((info, lines))
                info = None
        elif info is not None:
            lines.append(line)
    assert info is None, "README.md: a ``` block is not closed"
    return blocks


def runnable_blocks() -> list[list[str]]:
    return [lines for info, lines in fenced_blocks(README.read_text()) if info == RUNNABLE]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced blocks, inline code removed (links there are not links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append(INLINE_CODE.sub("", line))
    return out


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    seen: dict[str, int] = {}
    out = set()
    for line in heading_lines(path):
        slug = re.sub(r"[^\w\- ]", "", line.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def heading_lines(path: Path) -> list[str]:
    """The text of every heading outside fenced blocks, backticks removed."""
    out, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append(line.lstrip("#").strip().replace("`", ""))
    return out


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines, more than {MAX_README_LINES}"


def test_runnable_blocks_hold_the_promised_commands_and_no_installs():
    blocks = runnable_blocks()
    lines = [line.strip() for block in blocks for line in block]
    for command in PROMISED:
        assert command in lines, f"no ```{RUNNABLE} block of README.md runs: {command}"
    for line in lines:
        assert not re.search(r"\bpip\b|\bpytest\b", line), f"runnable block installs/tests: {line}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    broken = []
    for line in prose_lines(path.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{target} (no file {dest})")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                broken.append(f"{target} (no heading #{fragment} in {dest.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


@pytest.fixture(scope="module")
def ran_readme(tmp_path_factory):
    """Every runnable block of README.md, in order, in one fresh directory with docs/ beside
    it, a fresh cache and the venv's commands on PATH."""
    work = tmp_path_factory.mktemp("readme")
    (work / "docs").symlink_to(DOCS, target_is_directory=True)
    env = dict(os.environ)
    env["MCACLIP_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results = []
    for lines in runnable_blocks():
        script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
        proc = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True
        )
        results.append((script, proc))
    return work, results


@pytest.mark.slow
def test_runnable_blocks_exit_0(ran_readme):
    _, results = ran_readme
    assert results, f"README.md has no ```{RUNNABLE} block"
    for script, proc in results:
        assert proc.returncode == 0, f"{script}exit {proc.returncode}:\n{proc.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for names in PROMISED.values() for name in names])
def test_runnable_blocks_write_what_they_promise(ran_readme, name):
    work, _ = ran_readme
    path = work / name
    assert path.is_file() and path.stat().st_size > 0, f"{name} not written"
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            image.verify()


@pytest.mark.slow
def test_runnable_blocks_grid_and_paste_back(ran_readme):
    import numpy as np
    from PIL import Image

    work, _ = ran_readme
    with Image.open(work / "out/grid.png") as grid:
        width, height = grid.size
    assert height > 2 * width, "the grid should have 8 rows (faces) of 3 columns"
    with (
        Image.open(DOCS / "toy_photo.png") as photo,
        Image.open(work / "photo_out/toy_photo_blue-goatee_pasted.png") as pasted,
    ):
        assert pasted.size == photo.size, "the edit is pasted back into the whole picture"
        diff = np.abs(
            np.asarray(pasted.convert("RGB"), np.int16) - np.asarray(photo.convert("RGB"), np.int16)
        )
    assert diff.max() > 0, "the pasted picture is the photo unchanged"
    assert (diff.max(axis=2) > 0).mean() < 0.5, "the edit spread over most of the photo"
