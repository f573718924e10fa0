"""SIGKILL while saving or downloading a model, and many processes loading one repo at once:
the previous model folder and the Hub cache stay loadable, and every loader gets the whole,
identical model."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import HERE, PYTHON, child_env, state_digest

from colearn_core.errors import ConfigError
from colearn_core.hub import from_hub, save_pretrained


def digest(model) -> str:
    return state_digest(model.state_dict())


def folder_listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- save_pretrained -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["weights", "assets", "swap", "cleanup"])
def test_sigkill_during_save_pretrained_leaves_a_loadable_model(tmp_path, make_model, fault):
    previous = make_model(seed=1)
    target = save_pretrained(previous, tmp_path / "m")
    before = folder_listing(target)

    command = [PYTHON, str(HERE / "crash_hub.py"), "save", fault, str(target)]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr

    # The folder holds one complete model: the previous one, or (once the new one was moved
    # into place) the new one; never a mix, never nothing.
    loaded = from_hub(target)
    if fault in ("weights", "assets"):
        assert folder_listing(target) == before
        assert digest(loaded) == digest(previous)
    else:
        assert digest(loaded) in (digest(previous), digest(make_model_like_crash_hub()))
    # and the next save works, whatever was left next to it
    again = make_model(seed=3)
    save_pretrained(again, target)
    assert digest(from_hub(target)) == digest(again)


def test_sigkill_between_the_two_renames_of_the_fallback_names_the_previous_model(
    tmp_path, make_model
):
    # Without an atomic exchange (not Linux, or a file system without renameat2), replacing a
    # model takes two renames; killed between them, the folder is missing for a moment and the
    # previous model waits next to it. The error says where, and how to get it back.
    previous = make_model(seed=1)
    target = save_pretrained(previous, tmp_path / "m")
    command = [PYTHON, str(HERE / "crash_hub.py"), "save", "swap-fallback", str(target)]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    assert not target.exists()
    with pytest.raises(ConfigError) as info:
        from_hub(target)
    [left] = tmp_path.glob(".m.old-*")
    assert f"the previous model in {left}: rename it to m" in str(info.value)
    left.rename(target)
    assert digest(from_hub(target)) == digest(previous)


def make_model_like_crash_hub():
    """The model ``crash_hub.py save`` writes (toy-clip, width 16, seed 2)."""
    import torch

    from colearn_core.registry import registries

    torch.manual_seed(2)
    return registries.methods.get("toy-clip").from_config({"width": 16})


# --- downloads -----------------------------------------------------------------------------


def test_sigkill_during_a_download_leaves_the_cache_loadable(hub, make_model, tmp_path):
    from huggingface_hub import constants

    old, new = make_model(seed=1), make_model(seed=2)
    first = old.push_to_hub("tester/toy").oid
    assert digest(from_hub("tester/toy")) == digest(old)  # in the cache
    new.push_to_hub("tester/toy")

    hub.stall.clear()  # the next weight download stops half-way
    out = tmp_path / "never.json"
    proc = subprocess.Popen(
        [PYTHON, str(HERE / "crash_hub.py"), "load", "tester/toy", str(out)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert hub.stalled.wait(timeout=120), "the download never started"
        blobs = Path(constants.HF_HUB_CACHE) / "models--tester--toy" / "blobs"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the weight file is being written (half was sent)
            partial = list(blobs.glob("*.incomplete"))
            if partial:
                break
            time.sleep(0.02)
        assert partial, sorted(p.name for p in blobs.iterdir())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.stall.set()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()

    # the revision cached before the kill still loads, offline too
    assert digest(from_hub("tester/toy", revision=first)) == digest(old)
    assert digest(from_hub("tester/toy", revision=first, local_files_only=True)) == digest(old)
    # offline, the interrupted revision is either complete or refused with a clear message
    try:
        offline = from_hub("tester/toy", local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        message = str(exc)
        assert "tester/toy" in message and "incomplete" in message, message
        assert "save_pretrained" not in message, f"misleading advice: {message}"
    else:
        assert digest(offline) in (digest(old), digest(new))
    # online, the download is done again and gives the whole new model
    assert digest(from_hub("tester/toy")) == digest(new)
    assert digest(from_hub("tester/toy", local_files_only=True)) == digest(new)


# --- many processes, one repo --------------------------------------------------------------


def test_eight_processes_loading_one_repo_at_once_get_the_same_complete_model(
    hub, make_model, tmp_path
):
    model = make_model(seed=4)
    model.push_to_hub("tester/toy", max_shard_size=1500)  # several files to race on
    hub.delay = 0.01  # downloads overlap: each weight file takes ~0.1 s
    go = tmp_path / "go"
    outs = [tmp_path / f"out-{i}.json" for i in range(8)]
    procs = [
        subprocess.Popen(
            [PYTHON, str(HERE / "crash_hub.py"), "load", "tester/toy", str(out), str(go)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out in outs
    ]
    try:
        # once every process has imported everything, they all start loading at once
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not all(
            out.with_name(out.name + ".ready").exists() or p.poll() is not None
            for out, p in zip(outs, procs, strict=True)
        ):
            time.sleep(0.05)
        go.touch()
        logs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    results = [json.loads(out.read_text()) for out in outs]
    expected = {"weights": digest(model), "keys": len(model.state_dict())}
    for result in results:
        assert {k: result[k] for k in expected} == expected
    assert len({r["embeddings"] for r in results}) == 1
    weight_gets = [p for m, p, _ in hub.requests if m == "GET" and p.endswith(".safetensors")]
    assert weight_gets, "nothing was downloaded"
