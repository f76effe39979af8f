"""gradinfo: gradient information for PyTorch — capture it, transform it, use it.

The flow is ``capture`` -> ``transform`` -> consumers (``privacy``, and the other method families).
The capture API and the transform API are re-exported here; ``gradinfo.datasets``, ``gradinfo.models``
and the families are subpackages imported on use.
"""

from importlib.metadata import PackageNotFoundError, version

from gradinfo.capture import (
    InputGrads,
    clipped_grad_sum,
    empirical_fisher_diag,
    gnvp,
    hvp,
    input_grads,
    per_example_grads,
    per_example_norms,
    project_per_example,
    task_grads,
    zeroth_order_grad,
)
from gradinfo.transform import (
    GradTransform,
    add_gaussian_noise,
    as_optimizer,
    chain,
    clip_by_global_norm,
    clip_per_example,
    desketch,
    identity,
    scale,
    sketch,
    stochastic_quantize,
    topk_sparsify,
)

try:
    __version__ = version("gradinfo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "GradTransform",
    "InputGrads",
    "__version__",
    "add_gaussian_noise",
    "as_optimizer",
    "chain",
    "clip_by_global_norm",
    "clip_per_example",
    "clipped_grad_sum",
    "desketch",
    "empirical_fisher_diag",
    "gnvp",
    "hvp",
    "identity",
    "input_grads",
    "per_example_grads",
    "per_example_norms",
    "project_per_example",
    "scale",
    "sketch",
    "stochastic_quantize",
    "task_grads",
    "topk_sparsify",
    "zeroth_order_grad",
]
