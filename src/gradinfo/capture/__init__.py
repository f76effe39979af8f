"""Gradient information: batch, per-example, per-task, input, curvature, zeroth-order, projected."""

from gradinfo.capture.batch import BatchGrads, batch_grads
from gradinfo.capture.curvature import empirical_fisher_diag, gnvp, hvp
from gradinfo.capture.inputs import InputGrads, input_grads
from gradinfo.capture.inverse_fisher import InverseFisher
from gradinfo.capture.norms import clipped_grad_sum, per_example_norms
from gradinfo.capture.per_example import per_example_grads
from gradinfo.capture.projection import project_per_example
from gradinfo.capture.tasks import task_grads
from gradinfo.capture.zeroth_order import zeroth_order_grad

__all__ = [
    "BatchGrads",
    "InputGrads",
    "InverseFisher",
    "batch_grads",
    "clipped_grad_sum",
    "empirical_fisher_diag",
    "gnvp",
    "hvp",
    "input_grads",
    "per_example_grads",
    "per_example_norms",
    "project_per_example",
    "task_grads",
    "zeroth_order_grad",
]
