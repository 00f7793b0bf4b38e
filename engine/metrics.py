"""Classification metrics for discriminators: accuracy, per-label precision/recall/F1, confusion."""

from __future__ import annotations

from collections.abc import Sequence


def classification_report(gold: Sequence[int], pred: Sequence[int], labels: Sequence[str]) -> dict:
    """{"n", "accuracy", "per_label": {label: {precision, recall, f1, support}}, "confusion": {gold: {pred: n}}}.

    Undefined ratios (no predictions or no gold rows for a label) are 0.0, as sklearn's zero_division=0.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} labels, pred {len(pred)}")
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    n = len(gold)
    correct = sum(confusion[i][i] for i in range(k))
    per_label = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(k))
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(v["f1"] for v in per_label.values()) / k if k else 0.0,
        "per_label": per_label,
        "confusion": {labels[i]: {labels[j]: confusion[i][j] for j in range(k)} for i in range(k)},
    }


def evaluate_discriminator(discriminator, rows, batch_size: int = 32, progress=None, stop=None) -> dict:
    """Run `discriminator` over LabelledItems and report; adds "task"."""
    probs = discriminator.predict([r.item for r in rows], batch_size=batch_size, progress=progress, stop=stop)
    pred = [int(i) for i in probs.argmax(axis=1)]
    report = classification_report([r.label for r in rows], pred, discriminator.labels)
    return {"task": discriminator.task, **report}
