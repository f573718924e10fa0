"""``colearn train``: the command, registered through the core's ``register_commands`` hook.

Importing this module is cheap; the trainer (torch, accelerate, datasets) loads when a command
runs.
"""

from __future__ import annotations

import argparse

from ..cli import Command
from ..hookspecs import Register, hookimpl

__all__ = ["TRAIN_COMMAND"]

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


@hookimpl
def register_commands(register: Register) -> None:
    register("train", TRAIN_COMMAND)
