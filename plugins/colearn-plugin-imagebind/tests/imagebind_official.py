"""Meta's ImageBind model code, from the ``imagebind-unofficial`` wheel, for parity tests.

The wheel's ``imagebind/__init__.py`` imports its data loaders (torchaudio, pytorchvideo,
decord); its ``models/`` need only einops, timm, ftfy, regex and iopath. The package is
therefore entered through stub package modules, so importing ``imagebind.models.*`` never runs
``imagebind/__init__.py``. Install it with ``pip install --no-deps imagebind-unofficial``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

INSTALL = "pip install --no-deps imagebind-unofficial==0.1.1 einops timm ftfy regex iopath"


def package_root() -> Path:
    stub = sys.modules.get("imagebind")
    if getattr(stub, "__colearn_stub__", False):
        return Path(stub.__path__[0])  # type: ignore[union-attr]
    spec = importlib.util.find_spec("imagebind")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"ImageBind's model code is not installed ({INSTALL})")
    return Path(next(iter(spec.submodule_search_locations)))


def load(module: str = "imagebind_model") -> Any:
    """``imagebind.models.<module>``, imported without the package's ``__init__``."""
    root = package_root()
    for dep in ("einops", "timm", "ftfy", "regex", "iopath"):
        if importlib.util.find_spec(dep) is None:
            pytest.skip(f"ImageBind's model code needs {dep} ({INSTALL})")
    if not getattr(sys.modules.get("imagebind"), "__colearn_stub__", False):
        for name, path in (("imagebind", root), ("imagebind.models", root / "models")):
            stub = types.ModuleType(name)
            stub.__path__ = [str(path)]  # type: ignore[attr-defined]
            stub.__colearn_stub__ = True  # type: ignore[attr-defined]
            sys.modules[name] = stub
    return importlib.import_module(f"imagebind.models.{module}")


def bpe_path() -> Path:
    return package_root() / "bpe" / "bpe_simple_vocab_16e6.txt.gz"


def build_on_meta(factory: Any, *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)`` with every tensor on the meta device (nothing allocated),
    except ``torch.linspace``, whose values ImageBind reads with ``.item()`` (drop-path rates)."""
    import torch
    from torch.utils._device import DeviceContext

    class _Meta(DeviceContext):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if func is torch.linspace:
                return func(*args, **(kwargs or {}))
            return super().__torch_function__(func, types, args, kwargs)

    with _Meta(torch.device("meta")):
        return factory(*args, **kwargs)
