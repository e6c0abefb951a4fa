"""The repository stands alone: no file names a path outside it, and its documents' links
point at files it holds."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT

# Built from pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([
    r"/" + r"work/",                      # the build machine's checkout, venv and shared folder
    r"\.\./" + r"shared",                 # a folder beside the checkout
    r"(?<![\w/])" + r"shared/(nexacloud|reference|seeds)\b",
    r"\.\./\.\./",                        # anything two levels up
]))
TEXT_SUFFIXES = {".md", ".py", ".sh", ".toml", ".txt", ".sql", ".cfg", ".ini", ".yml", ".yaml", ".json", ".html"}


def tracked_text_files() -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, check=True, capture_output=True,
                           text=True).stdout.split()
    return [f for f in files if f.startswith(("scripts/", ".ci/")) or any(f.endswith(s) for s in TEXT_SUFFIXES)]


def test_no_tracked_file_names_a_path_outside_the_repository():
    offenders = []
    for name in tracked_text_files():
        for number, line in enumerate((REPO_ROOT / name).read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []


def test_document_links_point_at_files_of_the_repository():
    broken = []
    for document in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", document.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path = (document.parent / target).resolve()
            if not path.is_relative_to(REPO_ROOT.resolve()) or not path.exists():
                broken.append(f"{document.relative_to(REPO_ROOT)} -> {target}")
    assert broken == []
