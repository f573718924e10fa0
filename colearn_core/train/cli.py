"""``colearn train``: the command, registered through the core's ``register_commands`` hook.

Importing this module is cheap; the trainer (torch, accelerate, datasets) loads when a command
runs.
"""

from __future__ import annotations

import argparse

from ..cli import Command
from ..hookspecs import Register, hookimpl

__all__ = ["EVAL_COMMAND", "TRAIN_COMMAND"]

_DESCRIPTION = """\
Train a model from a YAML recipe: the method and its config, the dataset and the column for
each modality, the optimiser, and the trainer settings (see hub/recipes/ for examples).

The run folder (trainer.output_dir, default runs/<recipe name>) receives:
  recipe.yaml      the recipe as run, after --set overrides
  metrics.jsonl    one JSON line per logged step (loss terms, lr, samples/s)
  checkpoints/     step_XXXXXXXX/ folders (accelerate state, safetensors weights)
  eval.json        results of the recipe's eval tasks
  model/           the final model in the Hub layout (config.json + model.safetensors)

Several processes or GPUs:
  accelerate launch [--num_processes N] -m colearn train RECIPE.yaml [options]
trainer.batch_size is global: it is split over processes and grad_accum_steps micro-batches.
"""

_EPILOG = """\
examples:
  colearn train hub/recipes/toy.yaml
  colearn train hub/recipes/toy.yaml --set optim.lr=3.0e-4 --set trainer.max_steps=200
  colearn train hub/recipes/toy.yaml --resume            # continue from the latest checkpoint
  accelerate launch --num_processes 2 -m colearn train hub/recipes/toy.yaml
"""


def _arguments(p: argparse.ArgumentParser) -> None:
    p.description = _DESCRIPTION
    p.epilog = _EPILOG
    p.add_argument("recipe", metavar="RECIPE.yaml", help="the training recipe (YAML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optim.lr=3.0e-4 or "
        "--set method.config.embed_dim=256; the value is parsed as YAML; repeatable",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="latest|PATH",
        help="continue a run: 'latest' (the default when the flag has no value) picks the newest "
        "complete checkpoint in the run folder; or give a checkpoint folder. Restores weights, "
        "optimiser, scheduler, RNG and the position in the data",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        default=None,
        help="the run folder (overrides trainer.output_dir; default runs/<recipe name>)",
    )


def _run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from .recipe import load_recipe
    from .trainer import train

    recipe = load_recipe(args.recipe, args.overrides)
    result = train(recipe, output_dir=args.output_dir, resume=args.resume)
    if not PartialState().is_main_process:
        return 0
    loss = result.losses.get("loss")
    summary = f"loss {loss:.4f}" if loss is not None else "no step run"
    print(f"colearn train: done at step {result.step} ({summary}); run folder {result.run_dir}")
    return 0


TRAIN_COMMAND = Command(
    help="train a model from a YAML recipe (also under `accelerate launch -m colearn`)",
    add_arguments=_arguments,
    run=_run,
    description=_DESCRIPTION,
)


_EVAL_DESCRIPTION = """\
Run a recipe's eval tasks (its `eval:` list) on its evaluation split (data.eval_split, else
data.split) with a trained model: by default the run folder's model/, written by
`colearn train`; or any model folder or Hub repo id. Prints {task: {metric: value}} as JSON.
"""


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.description = _EVAL_DESCRIPTION
    p.add_argument("recipe", metavar="RECIPE.yaml", help="the recipe that names data and tasks")
    p.add_argument(
        "--model",
        metavar="PATH|REPO_ID",
        default=None,
        help="a model folder or Hub repo id (default: <run folder>/model)",
    )
    p.add_argument("--revision", default=None, help="Hub branch, tag or commit of --model")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value (parsed as YAML), e.g. --set data.eval_split=test; "
        "repeatable",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        default=None,
        help="the run folder whose model/ to evaluate (default: trainer.output_dir, else "
        "runs/<recipe name>)",
    )
    p.add_argument("--save", metavar="FILE", default=None, help="also write the results here")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")


def _eval_run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from ..errors import ConfigError
    from ..hub import from_hub
    from .evaluate import eval_data, run_tasks
    from .recipe import load_recipe
    from .trainer import run_folder

    recipe = load_recipe(args.recipe, args.overrides)
    if not recipe.eval:
        raise ConfigError(
            f"{recipe.source} has no eval tasks; add `eval: [{{task: <name>, ...}}]` to it"
        )
    model_ref = args.model or str(run_folder(recipe, args.output_dir) / "model")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = from_hub(model_ref, args.revision, device=device)
    results = run_tasks(model, recipe.eval, eval_data(recipe, model, device, args.batch_size))
    text = json.dumps(results, indent=2)
    print(text)
    if args.save:
        Path(args.save).write_text(text + "\n", encoding="utf-8")
    return 0


EVAL_COMMAND = Command(
    help="evaluate a trained model on a recipe's eval tasks",
    add_arguments=_eval_arguments,
    run=_eval_run,
    description=_EVAL_DESCRIPTION,
)


@hookimpl
def register_commands(register: Register) -> None:
    register("train", TRAIN_COMMAND)
    register("eval", EVAL_COMMAND)
