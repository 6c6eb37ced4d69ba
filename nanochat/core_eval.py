"""
Evaluation arithmetic shared by CORE (base models) and chat_eval (chat models): accuracy centred by a task's random
baseline, and standard errors.
"""

import math


def centred(accuracy: float, baseline: float) -> float:
    """(accuracy - b) / (1 - b): 0 for random guessing, 1 for a perfect score (b = the random baseline, a fraction)."""
    return (accuracy - baseline) / (1 - baseline)


def standard_error(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent items (binomial): sqrt(p (1 - p) / n)."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n > 0 else float("nan")


def mean_with_error(values: list[float], errors: list[float]) -> tuple[float, float]:
    """Mean of k independent measurements and its standard error, sqrt(sum se_i^2) / k."""
    k = len(values)
    return sum(values) / k, math.sqrt(sum(e * e for e in errors)) / k
