"""A class-balanced multinomial logistic regression in numpy: the linear probe the head is held to.

The objective is scikit-learn's `LogisticRegression(C=1.0, class_weight="balanced")` (lbfgs,
multinomial): C · Σ_i w_i · cross-entropy_i + ½‖W‖², with balanced weights w_i = n / (K · n_c)
and an unpenalised intercept. scikit-learn itself is not installed here: Keras imports it at
every `import tensorflow` when it is, which every trainer and Beam process would pay for. The
problem is convex, so full-batch Adam (its rate halved every 2,000 steps) reaches the same
optimum; `fit` stops when the gradient's largest entry is below `tolerance`.
"""

from __future__ import annotations

import numpy as np

from pipeline import metrics
from pipeline.features import LABELS


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit(features: np.ndarray, labels: np.ndarray, c: float = 1.0, tolerance: float = 1e-5,
        max_steps: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """(W [D, K], b [K]) minimising the objective above; raises if it has not converged."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    classes = len(LABELS)
    balanced = metrics.class_weights(dict(enumerate(np.bincount(labels, minlength=classes).tolist())))
    weights = np.array([balanced[name] for name in LABELS])[labels]  # The trainer's weighted-ce weights.
    onehot = np.eye(classes)[labels]
    w, b = np.zeros((features.shape[1], classes)), np.zeros(classes)
    moments = [np.zeros_like(w), np.zeros_like(b), np.zeros_like(w), np.zeros_like(b)]
    rate = 0.05
    for step in range(1, max_steps + 1):
        error = (_softmax(features @ w + b) - onehot) * (c * weights)[:, None]
        grad_w, grad_b = features.T @ error + w, error.sum(axis=0)
        if max(np.abs(grad_w).max(), np.abs(grad_b).max()) < tolerance:
            return w, b
        for index, (param, grad) in enumerate(((w, grad_w), (b, grad_b))):  # Adam, bias-corrected.
            first, second = moments[index], moments[index + 2]
            first *= 0.9
            first += 0.1 * grad
            second *= 0.999
            second += 0.001 * grad * grad
            param -= rate * (first / (1 - 0.9 ** step)) / (np.sqrt(second / (1 - 0.999 ** step)) + 1e-12)
        if step % 2000 == 0:
            rate *= 0.5
    raise RuntimeError(f"the linear probe did not converge in {max_steps} steps")


def predict(model: tuple[np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    w, b = model
    return (np.asarray(features, np.float64) @ w + b).argmax(axis=1)
