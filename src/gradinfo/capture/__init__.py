"""Gradient information: per-example, per-task, input, curvature, zeroth-order, projected."""

from gradinfo.capture.norms import clipped_grad_sum, per_example_norms
from gradinfo.capture.per_example import per_example_grads

__all__ = ["clipped_grad_sum", "per_example_grads", "per_example_norms"]
