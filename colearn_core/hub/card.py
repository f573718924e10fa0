"""The ``README.md`` model card: Hub metadata (YAML front matter) and a short usage text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["REPO_PLACEHOLDER", "eval_results", "make_card"]

#: Stands for the repo id in a card saved before the model had one; replaced on push.
REPO_PLACEHOLDER = "<user>/<model>"


def eval_results(results: Mapping[str, Mapping[str, float]]) -> list[Any]:
    """``{"task/dataset": {metric: value}}`` -> ``huggingface_hub.EvalResult`` list."""
    from huggingface_hub import EvalResult

    out = []
    for key, metrics in results.items():
        task, sep, dataset = str(key).partition("/")
        if not sep or not task or not dataset or not isinstance(metrics, Mapping):
            raise ConfigError(
                f"results key {key!r}: expected 'task/dataset' mapping to {{metric: value}}, "
                "e.g. {'zero-shot/fashion_mnist': {'accuracy': 0.71}}"
            )
        for metric, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"results[{key!r}][{metric!r}] must be a number, got {value!r}")
            out.append(
                EvalResult(
                    task_type=task,
                    dataset_type=dataset,
                    dataset_name=dataset,
                    metric_type=str(metric),
                    metric_value=float(value),
                )
            )
    return out


def make_card(
    config: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    results: Mapping[str, Mapping[str, float]] | None = None,
    datasets: Sequence[str] | None = None,
    license: str | None = None,
) -> Any:
    """A ``huggingface_hub.ModelCard`` for a model whose ``config.json`` content is ``config``.

    Without ``repo_id`` the usage snippet shows :data:`REPO_PLACEHOLDER`, which
    :func:`~colearn_core.hub.push_folder` replaces with the repo pushed to.
    """
    from huggingface_hub import ModelCard, ModelCardData

    method = config["method"]
    towers = config.get("modalities", {})
    kinds = sorted({t.get("modality") for t in towers.values() if t.get("modality")})
    name = repo_id.rstrip("/").split("/")[-1] if repo_id else f"colearn-{method}"
    repo_id = repo_id or REPO_PLACEHOLDER
    data = ModelCardData(
        library_name="colearn",
        tags=["colearn", method, *kinds],
        datasets=list(datasets) if datasets else None,
        license=license,
        model_name=name,
        eval_results=eval_results(results) if results else None,
    )
    plugins = config.get("required_plugins", {})
    install = " ".join(["colearn-core", *plugins]) if plugins else "colearn-core"
    lines = [
        f"# {name}",
        "",
        f"A colearn **{method}** model"
        + (f" over {', '.join(kinds)}" if kinds else "")
        + (f", embedding dimension {config['embed_dim']}" if config.get("embed_dim") else "")
        + ".",
        "",
        "## Usage",
        "",
        "```bash",
        f"pip install {install}",
        "```",
        "",
        "```python",
        "from colearn_core import from_hub",
        "",
        f'model = from_hub("{repo_id}")  # eval mode; revision="<sha>" pins a version',
        f'# only some towers: from_hub("{repo_id}", modalities=["{next(iter(towers), "image")}"])',
        "```",
        "",
        f"Command line: `colearn info {repo_id}`, `colearn pull {repo_id}`.",
    ]
    if towers:
        lines += ["", "## Modalities", "", "| tower | modality | preprocessing |", "|---|---|---|"]
        for tower, t in towers.items():
            lines.append(f"| {tower} | {t.get('modality', '')} | `{t.get('config', {})}` |")
    if results:
        lines += ["", "## Results", "", "| task | dataset | metric | value |", "|---|---|---|---|"]
        for r in eval_results(results):
            row = (r.task_type, r.dataset_name, r.metric_type, f"{r.metric_value:.4g}")
            lines.append("| " + " | ".join(row) + " |")
    if plugins:
        lines += ["", "## Requires", ""]
        lines += [f"- `{dist}{spec}`" for dist, spec in plugins.items()]
    body = "\n".join(lines) + "\n"
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
