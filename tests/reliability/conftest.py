"""Fixtures for the reliability tests, reused from the Hub and trainer test folders.

``tests/hub`` and ``tests/train`` are put on ``sys.path`` (so their helper modules import), and
their ``conftest.py`` files are loaded by path under other module names, so that their fixtures
(``hub``, ``make_model``, the accelerate reset) serve these tests too without a
copy. In these tests ``hub`` is a :class:`slow_hub.SlowHubServer`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for folder in (HERE, TESTS / "hub", TESTS / "train"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


from slow_hub import SlowHubServer  # noqa: E402  (needs tests/hub on sys.path)

_hub = _load(TESTS / "hub" / "conftest.py", "_reliability_hub_fixtures")
# This copy of the Hub fixtures starts the server subclass whose weight downloads can be slowed
# down or stalled (it serves everything else exactly as the Hub tests' server).
_hub.HubServer = SlowHubServer
_train = _load(TESTS / "train" / "conftest.py", "_reliability_train_fixtures")

# Re-exported fixtures (pytest collects fixtures by name from this module).
hub = _hub.hub
make_model = _hub.make_model
_fresh_accelerate = _train._fresh_accelerate  # autouse: no accelerate state leaks between tests
