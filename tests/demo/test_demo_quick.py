"""`make demo`'s path, shortened (``run_demo.py --quick``): train, evaluate, publish, reload,
plot; then the printed ``colearn eval`` / ``colearn embed`` commands on the published model,
and publishing to a Hub server instead of a folder.

The demo itself runs once per module (a subprocess, as `make demo` runs it); the tests check
what it left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "run_demo.py"
BIN = Path(sys.executable).parent

try:
    import matplotlib  # noqa: F401  (demo/requirements.txt; `make demo` installs it)

    HAS_MATPLOTLIB = True
except ImportError:
    HAS_MATPLOTLIB = False

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="the demo's dataset speaks class names with espeak-ng (apt install espeak-ng)",
)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "COLEARN_CACHE": str(tmp / "cache"),  # fresh speech clips, not the user's cache
            "HF_HOME": str(tmp / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONHASHSEED": "0",
            # the demo trains and evaluates with one torch thread; the CLI commands get the
            # same, so that their arithmetic (hence every metric) is bit-identical
            "OMP_NUM_THREADS": "1",
        }
    )
    env.pop("HF_TOKEN", None)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("demo")
    run_dir = tmp / "run"
    # without matplotlib the demo still trains, publishes, reloads and checks; only the
    # plots are left out (and their test skipped)
    plots = [] if HAS_MATPLOTLIB else ["--no-plots"]
    stdout = _run(
        [sys.executable, str(DEMO), "--quick", "--output-dir", str(run_dir), *plots], _env(tmp), tmp
    )
    summary = json.loads((run_dir / "demo.json").read_text(encoding="utf-8"))
    return {"tmp": tmp, "run": run_dir, "stdout": stdout, "summary": summary}


def test_reloaded_model_reproduces_the_evaluation_exactly(demo: dict) -> None:
    s, run = demo["summary"], demo["run"]
    assert s["exact_match"] is True
    evaluated = s["evaluated"]
    # the trainer's own record of the final evaluation, and the reload, agree to the bit
    trainer_eval = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    assert trainer_eval["step"] == s["steps"] == 12
    assert trainer_eval["results"] == evaluated
    assert s["reloaded"] == evaluated
    assert set(evaluated) == {
        "imagebind-zero-shot",
        "emergent-zero-shot",
        "cross-modal-retrieval",
        "embedding-arithmetic",
    }
    for metrics in evaluated.values():
        assert metrics["n"] > 0
        assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k != "n")
    # the published folder is what was reloaded, in the Hub layout, with the results in its card
    model = Path(s["model"])
    assert model == run / "hub" / "local" / "colearn-demo-imagebind"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in model.iterdir()}
    card = (model / "README.md").read_text(encoding="utf-8")
    top1 = evaluated["emergent-zero-shot"]["top1"]
    assert f"| emergent-zero-shot | fashion-speech | top1 | {top1:.4g} |" in card


def test_summary_table_and_commands_are_printed(demo: dict) -> None:
    out, s = demo["stdout"], demo["summary"]
    assert "EMERGENT zero-shot, audio -> text" in out
    assert "reload check: exactly equal" in out
    top1 = s["evaluated"]["emergent-zero-shot"]["top1"]
    assert f"{100 * top1:6.1f}%" in out
    if HAS_MATPLOTLIB:
        for name in ("curves.png", "similarity.png", "embedding_map.png"):
            assert name in out
    assert " eval " in out and " embed " in out and "--modality audio" in out


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="pip install -r demo/requirements.txt")
def test_plots_are_png_files_with_content(demo: dict) -> None:
    from PIL import Image

    plots = demo["summary"]["plots"]
    assert set(plots) == {"curves", "similarity", "embedding_map"}
    for path in plots.values():
        path = Path(path)
        assert path.parent == demo["run"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            width, height = image.size
            pixels = np.asarray(image.convert("L"))
        assert width >= 800 and height >= 400
        assert pixels.std() > 10  # drawn on, not a blank canvas


def test_metrics_have_the_curves(demo: dict) -> None:
    rows = [json.loads(line) for line in (demo["run"] / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval/emergent-zero-shot/top1" in r]
    assert [r["step"] for r in losses] == [2, 4, 6, 8, 10, 12]
    assert {"loss/image_text", "loss/image_audio"} <= set(losses[0])
    assert [r["step"] for r in evals] == [6, 12]


def test_colearn_eval_on_the_published_model_gives_the_same_numbers(demo: dict) -> None:
    """The printed ``colearn eval`` command, as printed (plus --save)."""
    s, tmp = demo["summary"], demo["tmp"]
    command = s["commands"]["eval"]
    assert command[:2] == ["eval", str(demo["run"] / "recipe.yaml")]
    assert command[2:] == ["--model", s["model"]]
    saved = tmp / "cli-eval.json"
    _run([str(BIN / "colearn"), *command, "--save", str(saved)], _env(tmp), tmp)
    assert json.loads(saved.read_text(encoding="utf-8")) == s["evaluated"]


def test_colearn_embed_on_the_published_model(demo: dict) -> None:
    """The printed ``colearn embed`` commands (audio to .safetensors, images and text to
    .npy) give the embeddings the model gives in Python."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from colearn_core import from_hub
    from colearn_core.embed import embed_inputs

    s, tmp = demo["summary"], demo["tmp"]
    commands = s["commands"]
    assert set(commands) == {"eval", "embed_audio", "embed_image", "embed_text"}
    for name in ("embed_audio", "embed_image", "embed_text"):
        _run([str(BIN / "colearn"), *commands[name]], _env(tmp), tmp)

    model = from_hub(s["model"])
    for name, loader in (
        ("embed_audio", lambda p: load_file(p)["embeddings"]),
        ("embed_image", lambda p: torch.from_numpy(np.load(p))),
        ("embed_text", lambda p: torch.from_numpy(np.load(p))),
    ):
        command = commands[name]
        modality, out = command[2], command[4]
        inputs = command[6:]
        assert command[5] == s["model"] and len(inputs) == 2
        got = loader(out)
        assert got.shape == (2, 64)
        want = embed_inputs(model, modality, inputs)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    with safe_open(commands["embed_audio"][4], framework="pt") as f:
        assert json.loads(f.metadata()["inputs"]) == commands["embed_audio"][6:]
    # the demo's example audio is the test split's: spoken by held-out voices
    from colearn_plugin_imagebind.speech import TEST_VOICES

    slugs = [re.sub(r"[^a-z0-9]+", "-", v.lower()) for v in TEST_VOICES]
    for path in commands["embed_audio"][6:]:
        assert any(f"__{slug}__" in Path(path).name for slug in slugs), path


def test_publishing_to_a_hub_server_reloads_the_same_model(demo: dict) -> None:
    """``--repo-id``'s path (push_to_hub, then from_hub downloading it) against the local
    Hub-API server of tests/hub, in a subprocess that sees HF_ENDPOINT from the start."""
    sys.path.insert(0, str(ROOT / "tests" / "hub"))
    try:
        from hub_server import HubServer
    finally:
        sys.path.remove(str(ROOT / "tests" / "hub"))
    s, tmp = demo["summary"], demo["tmp"]
    script = f"""
import json, sys
sys.path.insert(0, {str(DEMO.parent)!r})
import run_demo
from colearn_core import from_hub
model = from_hub({s["model"]!r})
ref, where = run_demo.publish(model, repo_id="tester/colearn-demo", hub_dir=None,
                              results={json.dumps(s["evaluated"])}, dataset="fashion-speech",
                              private=False)
again = from_hub(ref)
same = {{k: bool((v == again.state_dict()[k]).all()) for k, v in model.state_dict().items()}}
print(json.dumps({{"ref": ref, "where": where, "same": all(same.values()), "n": len(same),
                  "config": again.config == model.config}}))
"""
    server = HubServer().start()
    try:
        env = _env(tmp, HF_ENDPOINT=server.url, HF_TOKEN="hf_test", HF_HOME=str(tmp / "hf-hub"))
        out = json.loads(_run([sys.executable, "-c", script], env, tmp).strip().splitlines()[-1])
    finally:
        server.stop()
    assert out["ref"] == "tester/colearn-demo" and out["same"] and out["config"] and out["n"] > 10
    assert "tester/colearn-demo" in server.repos
    files = server.repos["tester/colearn-demo"].resolve("main").files
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert b"emergent-zero-shot" in files["README.md"]
