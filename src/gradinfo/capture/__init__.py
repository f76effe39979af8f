"""Gradient information: per-example, per-task, input, curvature, zeroth-order, projected."""

from gradinfo.capture.per_example import per_example_grads

__all__ = ["per_example_grads"]
