"""Nothing in the code base unpickles: every ``torch.load`` passes ``weights_only=True``, and no
module loads pickles (``pickle.load(s)``, ``cloudpickle``, ``dill``, ``joblib.load``,
``pandas.read_pickle``, ``numpy.load(allow_pickle=True)``, ``torch.hub.load``).

The scan parses every Python file under colearn_core/, plugins/, examples/, benchmarks/ and
tests/ (a syntax tree, so strings and comments that mention these names do not count) and
follows import aliases (``import pickle as p``, ``from torch import load``). Writing a pickle
(``pickle.dumps``) is allowed: the Hub tests make a malicious one to prove it is never loaded.
Nothing is allow-listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("colearn_core", "plugins", "examples", "benchmarks", "tests")
SKIPPED_PARTS = {"__pycache__", ".venv", "build", "dist", "site-packages", "node_modules"}

#: module -> functions that unpickle (``None``: any use of the module is refused)
UNPICKLERS: dict[str, set[str] | None] = {
    "pickle": {"load", "loads", "Unpickler"},
    "_pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads", "Unpickler"},
    "cloudpickle": None,
    "dill": None,
    "joblib": {"load"},
    "pandas": {"read_pickle"},
    "torch.hub": {"load", "load_state_dict_from_url"},
    "shelve": {"open"},
}


def python_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not SKIPPED_PARTS & set(path.relative_to(ROOT).parts):
                files.append(path)
    return files


class Finder(ast.NodeVisitor):
    """Collects unsafe loads in one module as ``(line, text)``."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # local name -> dotted origin ("torch", "torch.load")
        self.found: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            self.names[local] = alias.name if alias.asname else alias.name.split(".")[0]
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            self.names[alias.asname or alias.name] = f"{module}.{alias.name}"
        self._check_module(node, module)
        self.generic_visit(node)

    def _check_module(self, node: ast.stmt, dotted: str) -> None:
        if UNPICKLERS.get(dotted.split(".")[0], ...) is None:
            self.found.append((node.lineno, f"imports {dotted} (a pickle library)"))

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.names.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func)
        if name:
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name == "torch.load":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    self.found.append((node.lineno, "torch.load without weights_only=True"))
            elif name in ("numpy.load", "np.load"):
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and not flag.value):
                    self.found.append((node.lineno, "numpy.load with allow_pickle"))
            else:
                module, _, function = name.rpartition(".")
                functions = UNPICKLERS.get(module, set())
                if functions is not None and function in functions:
                    self.found.append((node.lineno, f"{name}()"))
        self.generic_visit(node)


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    finder = Finder()
    finder.visit(ast.parse(source))
    return finder.found


def test_the_scanner_finds_each_kind_of_unsafe_load():
    # the scanner itself must not be blind: every form below is caught, the safe ones are not
    unsafe = {
        "import torch\ntorch.load(f)": "torch.load without weights_only=True",
        "import torch\ntorch.load(f, weights_only=False)": "torch.load without",
        "import torch as t\nt.load(f, map_location='cpu')": "torch.load without",
        "from torch import load\nload(f)": "torch.load without",
        "import torch\nflag = True\ntorch.load(f, weights_only=flag)": "torch.load without",
        "import pickle\npickle.loads(data)": "pickle.loads()",
        "import pickle as p\np.load(f)": "pickle.load()",
        "from pickle import loads\nloads(b)": "pickle.loads()",
        "import pickle\npickle.Unpickler(f).load()": "pickle.Unpickler()",
        "import cloudpickle": "imports cloudpickle",
        "from dill import loads": "imports dill",
        "import pandas as pd\npd.read_pickle(p)": "pandas.read_pickle()",
        "import numpy as np\nnp.load(p, allow_pickle=True)": "numpy.load with allow_pickle",
        "import torch\ntorch.hub.load('a/b', 'm')": "torch.hub.load()",
        "import joblib\njoblib.load(p)": "joblib.load()",
    }
    for source, expected in unsafe.items():
        found = unsafe_loads(source)
        assert len(found) == 1 and expected in found[0][1], (source, found)
    safe = [
        "import torch\ntorch.load(f, weights_only=True)",
        "import torch\ntorch.load(f, map_location='cpu', weights_only=True, mmap=True)",
        "import pickle\ndata = pickle.dumps(obj)",
        "import numpy as np\nnp.load(p)\nnp.load(p, allow_pickle=False)",
        "text = 'torch.load(path) is unsafe'  # torch.load(f)",
        "from safetensors.torch import load_file\nload_file(p)",
    ]
    for source in safe:
        assert unsafe_loads(source) == [], source


def test_the_scan_covers_the_code_base():
    files = python_files()
    tops = {f.relative_to(ROOT).parts[0] for f in files}
    assert tops == set(SCANNED), tops
    assert ROOT / "colearn_core" / "hub" / "pretrained.py" in files
    assert Path(__file__).resolve() in files  # tests are scanned too, this one included


def test_no_file_in_the_code_base_unpickles():
    problems = []
    for path in python_files():
        try:
            found = unsafe_loads(path.read_text(encoding="utf-8"))
        except SyntaxError as exc:
            pytest.fail(f"{path}: cannot be parsed for the scan: {exc}")
        problems += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in found]
    assert not problems, "unsafe loading (use safetensors, or weights_only=True):\n" + "\n".join(
        problems
    )
