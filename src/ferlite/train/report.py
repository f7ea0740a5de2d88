"""Evaluation and the run report: metrics.json, accuracy/loss/confusion plots and report.md.

Accuracy, per-class scores and the confusion matrix all come from one array of predictions,
aligned with its labels, so they cannot disagree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.contract import LABELS
from ferlite.edge.contract.atomic import atomic_write

log = logging.getLogger(__name__)

SIDE_NAMES = {"val": "validation", "test": "test"}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = len(LABELS)) -> np.ndarray:
    """Rows: true label, columns: predicted label."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def metrics_from_confusion(matrix: np.ndarray) -> dict[str, Any]:
    total = int(matrix.sum())
    per_class = {}
    f1s = []
    for i, label in enumerate(LABELS):
        tp, predicted, support = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1,
                            "support": int(support)}
        if support:
            f1s.append(f1)
    return {
        "n": total,
        "accuracy": _ratio(np.trace(matrix), total),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def compute_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, datasets: Sequence[str] | None = None
) -> dict[str, Any]:
    """Overall metrics plus the same per source data set."""
    result = metrics_from_confusion(confusion_matrix(y_true, y_pred))
    if datasets is not None:
        names = np.asarray(datasets)
        result["per_dataset"] = {
            name: metrics_from_confusion(confusion_matrix(y_true[names == name],
                                                          y_pred[names == name]))
            for name in sorted(set(names.tolist()))
        }
    return result


def predict_labels(model: Any, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    from .inputs import as_input

    probs = model.predict(as_input(faces), batch_size=batch_size, verbose=0)
    return np.argmax(probs, axis=1)


def _plot_curves(history: list[dict[str, float]], key: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label="train")
    if any(f"val_{key}" in h for h in history):
        ax.plot(epochs, [h.get(f"val_{key}", np.nan) for h in history], marker="o",
                label="validation")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if normalised[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = _ratio(np.trace(matrix), matrix.sum())
    ax.set_title(f"{title}\naccuracy {accuracy:.1%} ({np.trace(matrix)}/{matrix.sum()})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, metrics: dict[str, Any], history: list[dict[str, float]]) -> None:
    """metrics.json, accuracy.png, loss.png, confusion*.png and report.md in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    atomic_write(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    if history:
        _plot_curves(history, "accuracy", out / "accuracy.png")
        _plot_curves(history, "loss", out / "loss.png")
    images = []
    for side, result in metrics["sides"].items():
        name = f"confusion-{side}.png"  # the side is in the name: never a test/val mix-up
        plot_confusion(np.array(result["confusion"]), f"{SIDE_NAMES.get(side, side)} side, all data sets",
                       out / name)
        images.append((f"{side}, all data sets", name))
        for dataset, sub in result.get("per_dataset", {}).items():
            if len(result["per_dataset"]) > 1 and sub["n"]:
                sub_name = f"confusion-{side}-{_safe(dataset)}.png"
                plot_confusion(np.array(sub["confusion"]), f"{side}, {dataset}", out / sub_name)
                images.append((f"{side}, {dataset}", sub_name))
    atomic_write(out / "report.md", render_markdown(metrics, images).encode())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    lines = ["| side | data set | images | accuracy | macro-F1 |", "|---|---|---|---|---|"]
    for side, result in metrics["sides"].items():
        lines.append(f"| {side} | all | {result['n']} | {result['accuracy']:.2%} | "
                     f"{result['macro_f1']:.3f} |")
        for dataset, sub in result.get("per_dataset", {}).items():
            lines.append(f"| {side} | {dataset} | {sub['n']} | {sub['accuracy']:.2%} | "
                         f"{sub['macro_f1']:.3f} |")
    return lines


def _per_class_table(result: dict[str, Any]) -> list[str]:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, scores in result["per_class"].items():
        lines.append(f"| {label} | {scores['precision']:.3f} | {scores['recall']:.3f} | "
                     f"{scores['f1']:.3f} | {scores['support']} |")
    return lines


def render_markdown(metrics: dict[str, Any], images: list[tuple[str, str]]) -> str:
    model, training = metrics.get("model", {}), metrics.get("training", {})
    primary = metrics.get("primary")
    lines = [
        f"# ferlite training report: {metrics.get('run', '')}", "",
        f"Model: {model.get('params', '?')} parameters, architecture `{model.get('architecture')}`.",
        f"Training: {training.get('epochs_run', '?')} epochs, best epoch "
        f"{training.get('best_epoch', '?')}, {training.get('seconds_per_epoch', 0):.1f} s/epoch, "
        f"{training.get('images_per_second', 0):.0f} images/s.",
        "", "## Results", "", *_metrics_table(metrics), "",
    ]
    if primary:
        lines += [f"Per class on {primary}:", "", *_per_class_table(metrics["sides"][primary]), ""]
    lines += ["## Curves", "", "![accuracy](accuracy.png)", "", "![loss](loss.png)", "",
              "## Confusion matrices (rows: true, columns: predicted)", ""]
    lines += [f"### {title}\n\n![{title}]({name})\n" for title, name in images]
    lines += ["## Files", "",
              "- `metrics.json`: every number above, confusion matrices as numbers",
              "- `manifest.csv`: every file, its label, its side and status",
              "- `history.csv`, `tensorboard/`: per-epoch logs; `checkpoints/`: resume state",
              "- `model.keras`: the best model (by validation accuracy)", ""]
    return "\n".join(lines)
