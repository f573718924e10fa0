"""Memory of ``from_hub(folder, modalities=[...])`` against loading every tower.

    python plugins/colearn-plugin-imagebind/benchmarks/partial_load.py MODEL_DIR [TOWER ...]
    python plugins/colearn-plugin-imagebind/benchmarks/partial_load.py --make-huge-widths DIR

Each load runs in a fresh process (peak RSS is per process): parameters, tensor bytes and the
peak resident memory above the process's baseline (torch and plugins imported). With
``--make-huge-widths`` it first writes a random-weight model with ImageBind-huge's widths and
tower layout, but 4 blocks in the image and text towers (1.5 GB instead of 4.7 GB).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


def _measure(folder: str, towers: list[str] | None) -> dict:
    import torch

    from colearn_core import from_hub, load_plugins

    load_plugins()
    torch.zeros(1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = from_hub(folder, modalities=towers)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tensors = list(model.parameters()) + list(model.buffers())
    return {
        "towers": list(model.towers),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensor_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "peak_rss_above_baseline_bytes": (peak - base) * 1024,
    }


def _make_huge_widths(folder: str) -> None:
    import torch
    from colearn_plugin_imagebind.convert import imagebind_config
    from colearn_plugin_imagebind.model import ImageBind

    config = imagebind_config(vision_num_blocks=4, text_num_blocks=4)
    config["towers"]["text"]["modality"]["tokenizer"] = "tiny"
    with torch.device("meta"):
        model = ImageBind(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.normal_(0, 0.02)
    model.save_pretrained(folder)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--child":
        print(json.dumps(_measure(args[1], json.loads(args[2]))))
        return
    if args and args[0] == "--make-huge-widths":
        _make_huge_widths(args[1])
        args = args[1:]
    folder, towers = args[0], args[1:] or ["image", "audio"]
    results = {}
    for name, which in (("all towers", None), ("+".join(towers), towers)):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(Path(folder)), json.dumps(which)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
