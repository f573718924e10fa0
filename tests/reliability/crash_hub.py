"""Hub-layer work in a subprocess, for the reliability tests (a test driver).

    python crash_hub.py save FAULT FOLDER     save a seeded toy-clip model to FOLDER and SIGKILL
                                              the process at FAULT (below)
    python crash_hub.py load REPO OUT [GO]    from_hub(REPO); write the digest of its weights and
                                              of its embeddings of a fixed batch to OUT as JSON;
                                              with GO, touch OUT.ready, then wait until GO exists
                                              (so that many processes load at the same moment)

Faults of ``save`` (each a SIGKILL: no cleanup runs):

``weights``   half-way through writing ``model.safetensors`` into the temporary folder
``assets``    after the config and the weights are written, before the assets and the card
``swap``      right after the first rename step that moves a folder at FOLDER's path (the old
              model out, or the new one in); with an atomic exchange there is no step between
``swap-fallback``  ``swap`` where no atomic exchange is available (two renames)
``cleanup``   half-way through deleting the replaced model folder

The process exits with code 3 if the fault never fired.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def save(fault: str, folder: Path) -> int:
    import huggingface_hub
    import torch

    from colearn_core.hub import pretrained
    from colearn_core.registry import registries

    torch.manual_seed(2)
    model = registries.methods.get("toy-clip").from_config({"width": 16})
    target = folder.absolute()

    if fault == "weights":
        real = huggingface_hub.save_torch_state_dict

        def save_torch_state_dict(state_dict: Any, save_directory: Any, **kwargs: Any) -> Any:
            real(state_dict, save_directory, **kwargs)
            path = Path(save_directory) / "model.safetensors"
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size // 2)
            _die()

        huggingface_hub.save_torch_state_dict = save_torch_state_dict
    elif fault == "assets":
        model.save_assets = lambda _folder: _die()  # type: ignore[method-assign]
    elif fault in ("swap", "swap-fallback"):
        if fault == "swap-fallback":  # as on a system without an atomic exchange
            pretrained._exchange = lambda a, b: False

        def touches_target(*paths: Any) -> bool:
            return any(Path(os.fspath(p)).absolute() == target for p in paths)

        for name in ("replace", "rename"):
            real_move = getattr(os, name)

            def move(src: Any, dst: Any, *args: Any, _real: Any = real_move, **kwargs: Any) -> Any:
                result = _real(src, dst, *args, **kwargs)
                if touches_target(src, dst):
                    _die()
                return result

            setattr(os, name, move)
        exchange = getattr(pretrained, "_exchange", None)
        if exchange is not None:  # an atomic exchange of two folders is one step

            def exchange_then_die(a: Any, b: Any, _real: Any = exchange) -> Any:
                result = _real(a, b)
                if result and touches_target(a, b):
                    _die()
                return result

            pretrained._exchange = exchange_then_die
    elif fault == "cleanup":
        real_rmtree = shutil.rmtree

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> Any:
            victim = Path(path)
            if victim.name.startswith(f".{target.name}.") and victim.is_dir():
                files = sorted(p for p in victim.iterdir() if p.is_file())
                if files:
                    files[0].unlink()
                    _die()
            return real_rmtree(path, *args, **kwargs)

        shutil.rmtree = rmtree
    else:
        raise SystemExit(f"unknown fault {fault!r}")

    model.save_pretrained(target)
    print(f"crash_hub: the save ended without reaching {fault}")
    return 3


def load(repo: str, out: Path, go: Path | None) -> int:
    import torch
    from reliability_helpers import state_digest

    from colearn_core.hub import from_hub

    if go is not None:
        out.with_name(out.name + ".ready").touch()
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    model = from_hub(repo)
    g = torch.Generator().manual_seed(0)
    batch = {t: {"values": torch.randn(4, 8, generator=g)} for t in ("a", "b")}
    with torch.no_grad():
        embeddings = model.embed(batch)
    result = {
        "weights": state_digest(model.state_dict()),
        "embeddings": state_digest(embeddings),
        "keys": len(model.state_dict()),
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out)
    return 0


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(1)
    if argv[:1] == ["save"] and len(argv) == 3:
        return save(argv[1], Path(argv[2]))
    if argv[:1] == ["load"] and len(argv) in (3, 4):
        return load(argv[1], Path(argv[2]), Path(argv[3]) if len(argv) == 4 else None)
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
