"""The house's import rules, checked by walking every module's imports (docs/architecture.md).

Data flows one way, producers/ → ZeroMQ → detector/ → Redis → consumers/, and app/ is the one
room that composes: producers/ and consumers/ never import each other, detector/ imports neither
side, nothing but app/ (and tests, bench) imports app/, and serving code never imports the
training package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("app", "producers", "consumers", "detector")
# room → the top-level packages it must not import
FORBIDDEN = {
    "producers": {"consumers", "app"},
    "consumers": {"producers", "app"},
    "detector": {"producers", "consumers", "app"},
}
TRAINING = "detector.training"
TRAINING_FILES = ("detector/training/",)


def imported_modules(source: str, module: str) -> list[str]:
    """Every module named by an import in ``source`` (``if TYPE_CHECKING`` and function-level
    imports included), relative imports resolved against ``module`` (dotted)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[:-node.level]
                names.append(".".join(base + ([node.module] if node.module else [])))
            else:
                names.append(node.module or "")
    return names


def crossings(rel_path: str, source: str) -> list[str]:
    """The rule-breaking imports of one file, as ``"<path> imports <module>"`` lines."""
    module = rel_path[:-3].replace("/", ".").removesuffix(".__init__")
    room = rel_path.split("/")[0]
    found = []
    for name in imported_modules(source, module):
        top = name.split(".")[0]
        if top in FORBIDDEN.get(room, ()):
            found.append(f"{rel_path} imports {name}")
        elif top == "app" and room not in ("app", "tests", "bench"):
            found.append(f"{rel_path} imports {name}")
        elif (name == TRAINING or name.startswith(TRAINING + ".")) and room == "detector" \
                and not rel_path.startswith(TRAINING_FILES):
            found.append(f"{rel_path} imports {name} (serving code never imports training)")
    return found


def tree_files() -> list[str]:
    skip = {".venv", ".git", "tests", "bench", "build", "node_modules"}
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                  if not skip.intersection(p.relative_to(ROOT).parts)
                  and not any(part.endswith(".egg-info") for part in p.parts))


def test_no_file_in_the_tree_crosses_a_room():
    files = tree_files()
    assert any(f.startswith("consumers/") for f in files)   # the walk found the tree
    found = [line for f in files for line in crossings(f, (ROOT / f).read_text())]
    assert found == []


@pytest.mark.parametrize("path, source, expected", [
    ("consumers/x.py", "", []),
    ("consumers/x.py", "from detector.config import Config", []),
    ("consumers/x.py", "from producers.file_source import FileSource",
     ["consumers/x.py imports producers.file_source"]),
    ("consumers/dashboard/x.py", "def f():\n    from app.control import send_request\n",
     ["consumers/dashboard/x.py imports app.control"]),
    ("consumers/dashboard/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    import app.upload\n", ["consumers/dashboard/x.py imports app.upload"]),
    ("producers/x.py", "import consumers.watch", ["producers/x.py imports consumers.watch"]),
    ("producers/x.py", "from detector.wire import FrameMessage", []),
    ("detector/x.py", "from producers.base import Source", ["detector/x.py imports producers.base"]),
    ("detector/x.py", "from app import cli", ["detector/x.py imports app"]),
    ("detector/x.py", "from detector.training.media import open_video",
     ["detector/x.py imports detector.training.media (serving code never imports training)"]),
    ("detector/training/x.py", "from .media import open_video", []),
    ("detector/x.py", "from .training import media",
     ["detector/x.py imports detector.training (serving code never imports training)"]),
    ("scripts/x.py", "import app.cli", ["scripts/x.py imports app.cli"]),
    ("app/x.py", "from producers.hub import ProducerHub\nfrom consumers.watch import run_watch\n"
     "from detector.training.train import train", []),
    ("tests/x.py", "import app.cli", []),
])
def test_crossings_table(path, source, expected):
    assert crossings(path, source) == expected
