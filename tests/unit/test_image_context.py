"""The image build sees every file the package needs.

The Containerfile builds the wheel from a context that `.dockerignore` cuts down to `src` and a few files. A
symlink under `src/` whose target is outside that context is dangling inside the build: setuptools then drops the
file from the wheel without a word, and the image fails only when the code reads it (the operator crashed at start
on a real node because `operator/controller-rbac.yaml` -> `manifests/rbac/controller.yaml` was missing).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _symlinks() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT / "src"):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info")]
        found += [Path(dirpath) / n for n in filenames if (Path(dirpath) / n).is_symlink()]
    return found


def test_every_symlink_target_under_src_is_in_the_build_context_and_copied() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    copies = [line.split() for line in (ROOT / "Containerfile").read_text().splitlines() if line.startswith("COPY ")]
    links = _symlinks()
    assert links, "src/multinic_ctrl/operator/controller-rbac.yaml is expected to be a symlink"
    for link in links:
        target = (link.parent / os.readlink(link)).resolve()
        assert target.is_file(), f"{link} points to nothing"
        relative = target.relative_to(ROOT).as_posix()
        if relative.startswith("src/"):
            continue  # inside the copied tree
        assert f"!{relative}" in ignore, f".dockerignore must re-include {relative} (target of {link})"
        assert any(words[1] == relative for words in copies if len(words) >= 3), (
            f"the Containerfile must COPY {relative} (target of {link}) next to src"
        )
