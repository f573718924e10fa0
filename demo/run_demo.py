"""``make demo``: colearn's main job end to end, on data every machine can build.

1. data      Fashion-MNIST images (Debian's dataset-fashion-mnist, else the Hugging Face copy),
             a caption for each, and its class name spoken by espeak-ng: the ``fashion-speech``
             builder of colearn-plugin-imagebind. Test clips use voices training never hears.
2. train     a small ImageBind: image, text and audio towers; only (image, text) and
             (image, audio) pairs are trained, with symmetric InfoNCE (``colearn train``'s
             trainer, the recipe ``demo/demo.yaml``).
3. evaluate  zero-shot image -> text, emergent audio -> text (a pair never trained), audio <->
             image retrieval, image + audio embedding arithmetic.
4. publish   to a local hub folder (``<run>/hub/<repo id>``), or with ``--repo-id`` (and a token)
             to the Hugging Face Hub; then reload it with ``from_hub`` and evaluate again: every
             number must be exactly equal.
5. show      a results table, PNG plots in the run folder, and the ``colearn eval`` /
             ``colearn embed`` commands that work on the published model.

    python demo/run_demo.py                       # what `make demo` runs
    python demo/run_demo.py --quick               # a 1-minute version (the CI test runs it)
    python demo/run_demo.py --repo-id you/colearn-demo   # publish to the Hub (HF_TOKEN)
    python demo/run_demo.py --set trainer.max_steps=400  # any recipe override
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # plots.py lives next to this file
    sys.path.insert(0, str(HERE))
DEFAULT_RECIPE = HERE / "demo.yaml"
DEFAULT_REPO = "local/colearn-demo-imagebind"

#: The shortened run of ``--quick`` (what tests/demo runs in CI): the same code path on a few
#: hundred examples, fewer voices and a dozen steps.
QUICK_OVERRIDES: tuple[str, ...] = (
    "trainer.max_steps=12",
    "trainer.batch_size=32",
    "trainer.eval_every=6",
    "trainer.log_every=2",
    "data.num_workers=0",
    "data.builder_args.train_limit=400",
    "data.builder_args.test_limit=60",
    "data.builder_args.train_voices=[en-us+m1, en-us+f3, en-gb+m3, en-gb+f1]",
    "data.builder_args.train_speeds=[160]",
    "data.builder_args.test_speeds=[160]",
)

#: How each evaluation reads in the table: task -> (what it measures, metric label prefix).
TASK_LABELS: dict[str, str] = {
    "imagebind-zero-shot": "zero-shot classification, image -> text prompts",
    "emergent-zero-shot": "EMERGENT zero-shot, audio -> text (pair never trained)",
    "cross-modal-retrieval": "retrieval (any example of the same class counts)",
    "embedding-arithmetic": "embedding arithmetic, image + audio -> text",
}


# --- small helpers ----------------------------------------------------------------------------


def _short(path: str | Path) -> str:
    """A path relative to the working directory when it is below it (for printing)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class Clock:
    """Wall and CPU time of each stage (CPU: this process and its finished children, such as
    DataLoader workers and espeak-ng), printed as it finishes."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.start_cpu = self.last_cpu = self.cpu_now()
        self.stages: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def cpu_now() -> float:
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def lap(self, name: str) -> str:
        now, cpu = time.perf_counter(), self.cpu_now()
        self.stages[name] = round(now - self.last, 1)
        self.cpu[name] = round(cpu - self.last_cpu, 1)
        self.last, self.last_cpu = now, cpu
        return f"{self.stages[name]} s (CPU {self.cpu[name]} s)"

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)

    @property
    def total_cpu(self) -> float:
        return round(self.cpu_now() - self.start_cpu, 1)


def _heading(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def data_sources() -> list[str]:
    """Where the demo's raw data comes from on this machine (for the summary)."""
    from colearn_plugin_image.fashion_mnist import DEBIAN_DIR, HUB_ID

    local = os.environ.get("COLEARN_FASHION_MNIST_DIR") or (
        str(DEBIAN_DIR) if (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists() else None
    )
    images = f"Fashion-MNIST from {local}" if local else f"Fashion-MNIST from the Hub ({HUB_ID})"
    espeak = shutil.which("espeak-ng")
    speech = (
        f"speech by {espeak}"
        if espeak
        else "speech: espeak-ng NOT FOUND (apt install espeak-ng / brew install espeak-ng); "
        "only clips already in the cache can be used"
    )
    return [images, speech]


def fresh_run_folder(path: Path) -> None:
    """Remove a previous demo run at ``path`` (a folder the trainer wrote), so `make demo`
    can be run again; refuse to delete anything else."""
    if not path.exists():
        return
    looks_like_run = (path / "recipe.yaml").is_file() or (path / "demo.json").is_file()
    if not path.is_dir() or not (looks_like_run or not any(path.iterdir())):
        raise SystemExit(
            f"run_demo: {path} exists and is not a previous demo run (no recipe.yaml); "
            "choose another --output-dir"
        )
    print(f"run_demo: removing the previous run in {_short(path)}")
    shutil.rmtree(path)


# --- evaluation, publishing, reloading -------------------------------------------------------


def card_results(
    results: Mapping[str, Mapping[str, float]], dataset: str
) -> dict[str, dict[str, float]]:
    """``{"task/dataset": metrics}``: the model card's layout."""
    return {f"{task}/{dataset}": dict(metrics) for task, metrics in results.items()}


def publish(
    model: Any,
    *,
    repo_id: str | None,
    hub_dir: Path | None,
    results: Mapping[str, Mapping[str, float]],
    dataset: str,
    private: bool,
) -> tuple[str, str]:
    """Publish ``model``; returns ``(reference for from_hub, where it went in words)``.

    Without ``repo_id`` the model goes to the local hub folder ``hub_dir/<DEFAULT_REPO>`` in
    the Hub layout (config.json, model.safetensors, assets, model card). With it, to the
    Hugging Face Hub (``HF_ENDPOINT`` picks another server) with ``HF_TOKEN`` or a stored login.
    """
    card = card_results(results, dataset)
    if repo_id is None:
        if hub_dir is None:
            raise ValueError("publish: give repo_id or hub_dir")
        folder = model.save_pretrained(
            hub_dir / DEFAULT_REPO, results=card, datasets=[dataset], repo_id=DEFAULT_REPO
        )
        return str(folder), f"local hub folder {_short(folder)}"
    from huggingface_hub import constants, get_token

    if get_token() is None:
        raise SystemExit(
            f"run_demo: --repo-id {repo_id} needs a Hugging Face token: set HF_TOKEN (a token "
            "with write access, https://huggingface.co/settings/tokens) or run "
            "`huggingface-cli login`; or leave REPO_ID out to publish to a local folder"
        )
    info = model.push_to_hub(repo_id, results=card, datasets=[dataset], private=private)
    url = getattr(info, "commit_url", None) or f"{constants.ENDPOINT}/{repo_id}"
    return repo_id, f"Hub repo {repo_id} ({url})"


def compare(
    evaluated: Mapping[str, Mapping[str, float]], reloaded: Mapping[str, Mapping[str, float]]
) -> list[str]:
    """Every number that differs between two result sets (exact comparison)."""
    problems = []
    for task in sorted(set(evaluated) | set(reloaded)):
        a, b = evaluated.get(task, {}), reloaded.get(task, {})
        for metric in sorted(set(a) | set(b)):
            if a.get(metric) != b.get(metric):
                problems.append(f"{task}/{metric}: {a.get(metric)} vs {b.get(metric)}")
    return problems


def chance_level(task: str, metric: str, classes: int) -> float | None:
    """What guessing scores, for the table: top-k of K classes is k/K; recall@k with "any
    example of the class" is about 1 - (1 - 1/K)^k (balanced classes)."""
    if metric.startswith("top") and metric[3:].isdigit():
        return min(int(metric[3:]) / classes, 1.0)
    if "recall@" in metric:
        k = int(metric.rsplit("@", 1)[1])
        return 1 - (1 - 1 / classes) ** k
    if metric.endswith("_top1") or metric == "same_class_top1":
        return 1 / classes
    if metric == "composition_top2":
        return 1 / math.comb(classes, 2)
    return None


def results_table(
    evaluated: Mapping[str, Mapping[str, float]],
    reloaded: Mapping[str, Mapping[str, float]],
    classes: int,
) -> str:
    """A plain-text table: task, metric, trained, reloaded from the hub, chance."""
    header = ("evaluation", "metric", "trained", "reloaded", "chance")
    rows: list[tuple[str, ...]] = []
    for task, metrics in evaluated.items():
        label = TASK_LABELS.get(task.split("#")[0], task)
        n = metrics.get("n")
        if n is not None:
            label += f" [{int(n)} test examples]"
        first = True
        for metric, value in metrics.items():
            if metric == "n":
                continue
            again = reloaded.get(task, {}).get(metric)
            chance = chance_level(task.split("#")[0], metric, classes)
            rows.append(
                (
                    label if first else "",
                    metric,
                    f"{100 * value:6.1f}%",
                    "   n/a" if again is None else f"{100 * again:6.1f}%",
                    "" if chance is None else f"{100 * chance:5.1f}%",
                )
            )
            first = False
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "-+-".join("-" * w for w in widths)

    def fmt(row: Sequence[str]) -> str:
        return " | ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )

    return "\n".join([fmt(header), line, *(fmt(r) for r in rows)])


# --- plots ------------------------------------------------------------------------------------


def _eval_task_args(recipe: Any) -> tuple[list[str], list[str]]:
    """Class names and templates of the recipe's zero-shot evaluations (the plots use the
    same prompts as the table)."""
    from colearn_plugin_clip.prompts import resolve_class_names, resolve_templates

    args: dict[str, Any] = {}
    for entry in recipe.eval:
        if entry.task in ("imagebind-zero-shot", "emergent-zero-shot"):
            args = entry.args
            break
    return (
        resolve_class_names(args.get("class_names", "fashion-mnist")),
        resolve_templates(args.get("templates", "fashion-mnist-heldout")),
    )


def _unit(x: Any) -> Any:
    import torch.nn.functional as F

    return F.normalize(x.float(), dim=-1).cpu().numpy()


def make_plots(
    model: Any, recipe: Any, dataset: Any, run_dir: Path, *, per_class: int = 40
) -> dict[str, Path]:
    """Curves from ``metrics.jsonl``, and from the (reloaded) model's embeddings of the test
    split: class-level similarity heatmaps and a 2-D map of the joint space."""
    import numpy as np
    import plots

    from colearn_core.embed import embed_inputs

    class_names, templates = _eval_task_args(recipe)
    k = len(class_names)
    out: dict[str, Path] = {}
    out["curves"] = plots.plot_curves(
        plots.read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png", chance=1 / k
    )

    columns, label_col = recipe.data.columns, recipe.data.label_column or "label"
    labels = np.asarray(dataset[label_col])
    picked = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(k)])
    rows = dataset[picked.tolist()]
    image_z = _unit(embed_inputs(model, "image", list(rows[columns["image"]])))
    image_y = labels[picked]
    # every distinct clip of the test split once (held-out voices)
    clips: dict[str, int] = {}
    for path, y in zip(dataset[columns["audio"]], labels):
        if path is not None:
            clips.setdefault(path, int(y))
    audio_z = _unit(embed_inputs(model, "audio", list(clips)))
    audio_y = np.asarray(list(clips.values()))
    prompts = [t.format(name) for name in class_names for t in templates]
    text_z = _unit(embed_inputs(model, "text", prompts))
    text_y = np.repeat(np.arange(k), len(templates))

    def class_means(z: Any, y: Any) -> Any:
        means = np.stack([z[y == c].mean(axis=0) for c in range(k)])
        return means / np.linalg.norm(means, axis=1, keepdims=True)

    img, aud = class_means(image_z, image_y), class_means(audio_z, audio_y)
    txt = class_means(text_z, text_y)  # CLIP's prompt ensemble
    out["similarity"] = plots.plot_similarity(
        [
            (
                "audio vs text: EMERGENT (never trained)",
                aud @ txt.T,
                "audio (held-out voices)",
                "text prompts",
            ),
            ("image vs text (trained pair)", img @ txt.T, "image", "text prompts"),
            ("audio vs image (trained pair)", aud @ img.T, "audio (held-out voices)", "image"),
        ],
        class_names,
        run_dir / "similarity.png",
    )
    out["embedding_map"] = plots.plot_embedding_map(
        {"image": (image_z, image_y), "audio": (audio_z, audio_y), "text": (text_z, text_y)},
        class_names,
        run_dir / "embedding_map.png",
    )
    return out


def write_examples(dataset: Any, recipe: Any, run_dir: Path, n: int = 3) -> dict[str, list[str]]:
    """A few test inputs as files (PNG images, the WAV clips, captions), for the printed
    ``colearn embed`` commands."""
    import numpy as np
    import PIL.Image

    columns = recipe.data.columns
    folder = run_dir / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    rows = dataset[list(range(min(n, len(dataset))))]
    images = []
    for i, pixels in enumerate(rows[columns["image"]]):
        path = folder / f"test_{i}.png"
        PIL.Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
        images.append(str(path))
    return {
        "image": images,
        "audio": [p for p in rows[columns["audio"]] if p is not None],
        "text": [c for c in rows[columns["text"]] if c is not None],
    }


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run_demo.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="the training recipe")
    p.add_argument("--output-dir", type=Path, default=Path("runs/demo"), help="the run folder")
    p.add_argument(
        "--quick", action="store_true", help="a short run on a few hundred examples (CI)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value (as `colearn train --set`); repeatable",
    )
    p.add_argument(
        "--repo-id",
        default=None,
        help="publish to this Hugging Face Hub repo (needs HF_TOKEN or a login) instead of a "
        "local hub folder",
    )
    p.add_argument("--private", action="store_true", help="make the Hub repo private")
    p.add_argument(
        "--hub-dir",
        type=Path,
        default=None,
        help="the local hub folder (default <run folder>/hub)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the training process (default 1: the towers are small, so a "
        "second thread gains little, the DataLoader worker computes audio features on the "
        "other core, and on a busy CPU threads that wait for each other cost much more)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clock = Clock()
    run_dir = args.output_dir.expanduser().absolute()
    hub_dir = (args.hub_dir or run_dir / "hub").expanduser().absolute()

    import torch

    torch.set_num_threads(args.threads)

    from colearn_core import from_hub
    from colearn_core.train import Trainer, load_recipe
    from colearn_core.train.evaluate import eval_data, run_tasks

    overrides = [*(QUICK_OVERRIDES if args.quick else ()), *args.overrides]
    # the run folder goes into the recipe, so `colearn eval <run>/recipe.yaml` finds the model
    overrides.append(f"trainer.output_dir={run_dir}")
    recipe = load_recipe(args.recipe, overrides)
    fresh_run_folder(run_dir)

    _heading("1/5 data and model")
    for line in data_sources():
        print(f"  {line}")
    trainer = Trainer(recipe)
    model = trainer.method
    params = sum(p.numel() for p in model.parameters())
    print(
        f"  {len(trainer.examples)} training examples; towers {', '.join(model.modalities)} "
        f"({params / 1e6:.2f} M parameters); anchor {model.anchor}; device "
        f"{trainer.accelerator.device}; {torch.get_num_threads()} CPU threads"
    )
    print(f"  setup {clock.lap('setup')}")

    _heading(f"2/5 training ({trainer.max_steps} steps of {recipe.trainer.batch_size})")
    result = trainer.fit()
    evaluated = result.eval
    print(f"  training + evaluation {clock.lap('train')}; run folder {_short(run_dir)}")

    _heading("3/5 publishing")
    dataset_name = recipe.data.dataset
    reference, where = publish(
        model,
        repo_id=args.repo_id,
        hub_dir=hub_dir,
        results=evaluated,
        dataset=dataset_name,
        private=args.private,
    )
    print(f"  published to the {where} in {clock.lap('publish')}")

    _heading("4/5 reloading with from_hub and evaluating again")
    device = trainer.accelerator.device
    reloaded_model = from_hub(reference, device=device)
    data = eval_data(recipe, reloaded_model, device)
    reloaded = run_tasks(reloaded_model, recipe.eval, data)
    problems = compare(evaluated, reloaded)
    count = sum(len(m) for m in evaluated.values())
    verdict = (
        f"exactly equal: all {count} numbers of the reloaded model match the evaluation"
        if not problems
        else f"MISMATCH in {len(problems)} of {count} numbers: " + "; ".join(problems)
    )
    print(f"  {verdict} ({clock.lap('reload')})")

    _heading("5/5 plots and examples")
    test_split = data.loader.dataset.dataset  # the rows colearn eval reads (datasets.Dataset)
    figures: dict[str, Path] = {}
    if not args.no_plots:
        figures = make_plots(reloaded_model, recipe, test_split, run_dir)
    examples = write_examples(test_split, recipe, run_dir)
    print(f"  {clock.lap('plots')}")

    summary = {
        "recipe": str(args.recipe),
        "overrides": overrides,
        "run_dir": str(run_dir),
        "model": reference,
        "published": where,
        "steps": result.step,
        "evaluated": evaluated,
        "reloaded": reloaded,
        "exact_match": not problems,
        "plots": {k: str(v) for k, v in figures.items()},
        "examples": examples,
        "commands": cli_commands(run_dir, reference, examples),
        "seconds": {**clock.stages, "total": clock.total},
        "cpu_seconds": {**clock.cpu, "total": clock.total_cpu},
    }
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(summary, recipe, evaluated, reloaded, verdict)
    return 0 if not problems else 1


def cli_commands(
    run_dir: Path, model: str, examples: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """``colearn eval`` and ``colearn embed`` on the published model (arguments after
    ``colearn``; absolute paths)."""
    commands = {"eval": ["eval", str(run_dir / "recipe.yaml"), "--model", model]}
    outs = {"audio": "audio.safetensors", "image": "images.npy", "text": "text.npy"}
    inputs = {
        "audio": list(examples.get("audio", []))[:2],
        "image": list(examples.get("image", []))[:2],
        "text": ["a photo of a bag.", "a sneaker."],
    }
    for modality, files in inputs.items():
        if files:
            out = str(run_dir / outs[modality])
            commands[f"embed_{modality}"] = [
                "embed",
                "--modality",
                modality,
                "--out",
                out,
                model,
                *files,
            ]
    return commands


def _colearn() -> str:
    """How to call the colearn CLI from here: ``colearn`` when it is on PATH, else the path
    of the one next to this Python (e.g. ``.venv/bin/colearn``)."""
    exe = Path(sys.executable).parent / "colearn"
    on_path = shutil.which("colearn")
    if not exe.exists() or (on_path and Path(on_path).absolute() == exe.absolute()):
        return "colearn"
    return _short(exe)


def print_summary(
    summary: Mapping[str, Any],
    recipe: Any,
    evaluated: Mapping[str, Mapping[str, float]],
    reloaded: Mapping[str, Mapping[str, float]],
    verdict: str,
) -> None:
    class_names, _ = _eval_task_args(recipe)
    run = Path(summary["run_dir"])
    colearn = _colearn()
    print("\n" + "=" * 100)
    print(
        f"colearn demo: ImageBind-style model, {summary['steps']} steps, "
        f"{summary['seconds']['total']:.0f} s in all (CPU {summary['cpu_seconds']['total']:.0f} s)"
    )
    print("=" * 100)
    print(results_table(evaluated, reloaded, len(class_names)))
    print(f"\nreload check: {verdict}")
    print(f"model: {summary['published']}")
    if summary["plots"]:
        print("\nplots:")
        for name, path in summary["plots"].items():
            print(f"  {name:14s} {_short(path)}")
    print(f"\nrun folder {_short(run)}: metrics.jsonl, eval.json, model/, demo.json")
    print("\ntry it from the command line:")
    for command in summary["commands"].values():
        shown = [_short(a) if a.startswith("/") else a for a in command]
        print("  " + shlex.join([colearn, *shown]))


if __name__ == "__main__":
    from colearn_core.errors import ColearnError

    try:
        sys.exit(main())
    except ColearnError as exc:  # bad config, missing espeak-ng, ...: the message says the fix
        print(f"run_demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
