"""Per-example gradients: a hook fast path for common layers, ``torch.func`` for everything else.

For a batch ``(x_i, y_i)`` the per-example gradient is ``g_i = d loss_fn(model(x_i), y_i) / d theta``
(Goodfellow 2015, "Efficient Per-Example Gradient Computations", arXiv:1510.01799). Both paths compute it
exactly, whatever reduction ``loss_fn`` uses:

- **Fast path** (every trainable parameter owned by ``nn.Linear``, ``nn.Conv1d/2d``, ``nn.Embedding``,
  ``nn.LayerNorm``, ``nn.GroupNorm`` or ``nn.MultiheadAttention``): one batched forward with forward hooks
  that keep each layer's input ``a`` and put a zero-copy *tap* on its output; per-example losses
  ``l_i = loss_fn(out[i:i+1], y[i:i+1])`` computed by ``vmap`` over the batched output; one backward of
  ``sum_i l_i`` that runs only as far as the taps (no parameter ``.grad`` is formed, and each layer's
  weight-gradient GEMM is skipped). Because examples do not interact, row ``i`` of the gradient at a layer's
  output is example ``i``'s own, and the layer rule in :mod:`gradinfo.capture.layers` turns ``(a, g)`` into
  per-example gradients (e.g. ``dW_i = g_i^T a_i`` for Linear).
- **Fallback** (any other model): ``vmap(grad(loss_i))`` over the batch with ``torch.func.functional_call``
  (buffers passed through, tied weights tied). The fallback is chosen for the whole model when a trainable
  parameter is owned by an unsupported module, when a parameter of a supported module is also used outside
  that module's call (checked by counting the parameter's uses in the autograd graph), when a tapped layer
  sees an input whose leading size is not the batch size, or when the model output is not ``[B, ...]``.

Caveats:
    * Dropout: each example draws its own mask (the rows of one batched forward on the fast path;
      ``randomness="different"`` under ``vmap`` on the fallback); results are reproducible under
      ``torch.manual_seed`` but equal a loop over single examples only in distribution.
    * BatchNorm that normalises with batch statistics (train mode, or ``track_running_stats=False``) mixes
      examples, so there is no per-example gradient: a ``ValueError`` names the module; use ``model.eval()``
      or replace it with ``nn.GroupNorm``.
    * The fast path assumes a supported layer that sees a leading axis of size ``B`` has the batch on it;
      a model that moves the batch off axis 0 while another axis happens to equal ``B`` is not detected
      (``nn.MultiheadAttention`` with ``batch_first=False`` is handled).

Memory: ``chunk_size`` splits the batch; automatic chunking (``chunk_size=None``) uses
``chunk = max(1, budget // (3 * P * itemsize))`` with ``P`` the number of trainable scalars (a slot for the
result plus the rule's temporaries per example) and ``budget = min(2 GiB, available RAM / 4)``; the whole
batch runs at once when ``chunk >= B``. In one pass the layer rules' own results are returned (no copy);
over several chunks the result buffers are allocated once and the rules write straight into their slices.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from gradinfo.capture.layers import LINEAR, LayerRule, attention, rule_for
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import positive_int

_BUDGET_CAP = 2 << 30


class FastPathUnavailable(Exception):
    """Internal signal: this model or call needs the ``torch.func`` fallback."""


@dataclass
class Call:
    """One tapped layer call: its rule, module, saved input and the parameter slots it writes."""

    rule: LayerRule
    module: Any
    activation: Tensor | None
    targets: dict[str, tuple[str, slice | None]]
    shared: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Plan:
    """Which parameters are trainable (by key) and which modules get hooks."""

    params: dict[str, nn.Parameter]
    keys: dict[int, str]
    hooked: list[tuple[nn.Module, LayerRule | None]]
    uncovered: list[str]


class _Tap(torch.autograd.Function):
    """Identity on a layer output (sharing its storage) whose backward hands ``g`` to ``sink``."""

    @staticmethod
    def forward(
        ctx: Any, y: Tensor, anchor: Tensor, call: Call, sink: Callable[[Call, Tensor], None]
    ) -> Tensor:
        ctx.call, ctx.sink = call, sink
        return y.detach()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None, None]:
        ctx.sink(ctx.call, g)
        ctx.call = None
        return g, g.new_zeros(()), None, None


def check_batchnorm(model: nn.Module) -> None:
    """Raise if a BatchNorm layer normalises with batch statistics (examples would interact)."""
    offenders = [
        name or "<model>"
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)
    ]
    if offenders:
        raise ValueError(
            f"model has BatchNorm layers that use batch statistics: {', '.join(offenders)}; per-example "
            "gradients do not exist when examples are normalised together. Fix: call model.eval() (running "
            "statistics) or replace them with nn.GroupNorm"
        )


def check_batch(inputs: Any, targets: Any) -> None:
    """Raise unless ``inputs`` and ``targets`` are tensors sharing a non-empty batch axis ``[B, ...]``.

    Raises:
        TypeError: ``inputs`` or ``targets`` is not a tensor.
        ValueError: ``inputs`` has no batch axis or ``B == 0``, or ``targets``' first axis is not ``B``.
    """
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must have a non-empty batch axis, got shape {tuple(inputs.shape)}")
    if targets.dim() == 0 or targets.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"targets must have the batch size of inputs ({inputs.shape[0]}), "
            f"got shape {tuple(targets.shape)}"
        )


def validate(model: Any, loss_fn: Any, inputs: Any, targets: Any) -> int:
    """Check the common arguments and return the batch size."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}"
        )
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor with a leading batch axis, got {type(value).__name__}"
            )
        if value.dim() == 0 or value.shape[0] == 0:
            raise ValueError(
                f"{name} must have a non-empty leading batch axis, got shape {tuple(value.shape)}"
            )
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got {inputs.shape[0]} and {targets.shape[0]}"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no parameters with requires_grad=True; nothing to differentiate")
    check_batchnorm(model)
    return inputs.shape[0]


def make_plan(model: nn.Module) -> Plan:
    """Map trainable parameters to keys and find the supported modules that own them."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    keys = {id(p): n for n, p in params.items()}
    owners: dict[int, list[bool]] = {}
    hooked: list[tuple[nn.Module, LayerRule | None]] = []
    claimed: set[int] = set()
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            ok = (
                attention.supports(m)
                and type(m).forward is nn.MultiheadAttention.forward
                and "forward" not in vars(m)
            )
            for p in [*m._parameters.values(), *m.out_proj._parameters.values()]:
                if p is not None and id(p) in keys:
                    owners.setdefault(id(p), []).append(ok)
            claimed.add(id(m.out_proj))
            if ok:
                hooked.append((m, None))
    for m in model.modules():
        if id(m) in claimed or isinstance(m, nn.MultiheadAttention):
            continue
        own = [p for p in m._parameters.values() if p is not None and id(p) in keys]
        if not own:
            continue
        rule = rule_for(m)
        for p in own:
            owners.setdefault(id(p), []).append(rule is not None)
        if rule is not None:
            hooked.append((m, rule))
    uncovered = [n for n, p in params.items() if not all(owners.get(id(p), [False]))]
    return Plan(params, keys, hooked, uncovered)


def per_example_losses(loss_fn: LossFn, out: Tensor, targets: Tensor) -> Tensor:
    """``[B]`` losses ``loss_fn(out[i:i+1], targets[i:i+1])`` from one batched output (vmap, else a loop)."""
    try:
        losses = vmap(lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)), randomness="different")(
            out, targets
        )
    except RuntimeError:
        losses = torch.stack([loss_fn(out[i : i + 1], targets[i : i + 1]) for i in range(out.shape[0])])
    if losses.shape != (out.shape[0],):
        raise ValueError(f"loss_fn must return a scalar for one example, got shape {tuple(losses.shape[1:])}")
    return losses


def _check_graph(root: Any, taps: dict[Any, Call], plan: Plan, anchor: Tensor) -> list[Call]:
    """Reached taps, after checking each trainable parameter is used only inside tapped calls."""
    seen: set[Any] = set()
    stack = [root]
    used: Counter[int] = Counter()
    reached: list[Call] = []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in taps:
            reached.append(taps[node])
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            variable = getattr(nxt, "variable", None)
            if variable is not None:
                if variable is not anchor:
                    used[id(variable)] += 1
            elif nxt not in seen:
                stack.append(nxt)
    expected: Counter[int] = Counter()
    slots: Counter[tuple[str, Any]] = Counter()
    for call in reached:
        for key, rows in call.targets.values():
            expected[id(plan.params[key])] += 1
            slots[key, None if rows is None else (rows.start, rows.stop)] += 1
    for key, p in plan.params.items():
        if used[id(p)] != expected[id(p)]:
            raise FastPathUnavailable(f"parameter {key} is used outside a supported layer call")
    whole = {k for k, r in slots if r is None}
    shared = {k for (k, r), n in slots.items() if n > 1 or (r is not None and k in whole)}
    for call in reached:
        call.shared = frozenset(role for role, (key, _) in call.targets.items() if key in shared)
    return reached


def hook_pass(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    plan: Plan,
    sink: Callable[[Call, Tensor], None],
) -> Tensor:
    """One forward and one backward to the taps; ``sink(call, g)`` receives every tapped layer's output grad.

    Returns:
        The per-example losses ``[B]`` (detached).

    Raises:
        FastPathUnavailable: the model cannot use the fast path (nothing has been passed to ``sink``).
    """
    batch = inputs.shape[0]
    dtype = next(iter(plan.params.values())).dtype
    anchor = torch.zeros((), dtype=dtype, requires_grad=True)
    taps: dict[Any, Call] = {}

    def tap(y: Tensor, a: Tensor, rule: LayerRule, module: Any, slots: dict[str, tuple[Any, Any]]) -> Tensor:
        if a.dim() == 0 or a.shape[0] != batch or y.shape[0] != batch:
            raise FastPathUnavailable("a supported layer does not see the batch on axis 0")
        found = {
            r: (plan.keys[id(p)], rows)
            for r, (p, rows) in slots.items()
            if p is not None and id(p) in plan.keys
        }
        if not found or not y.requires_grad:
            return y
        call = Call(rule, module, a, found)
        out = _Tap.apply(y, anchor, call, sink)
        taps[out.grad_fn] = call
        return out

    def layer_hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        slots = {"weight": (module.weight, None), "bias": (getattr(module, "bias", None), None)}
        return tap(output, args[0], rule_by_module[id(module)], module, slots)

    def attention_forward(module: nn.Module) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            try:
                return attention.forward(module, args, kwargs, lambda y, a, s: tap(y, a, LINEAR, None, s))
            except LookupError as err:
                raise FastPathUnavailable(str(err)) from err

        return forward

    rule_by_module = {id(m): r for m, r in plan.hooked if r is not None}
    handles = [m.register_forward_hook(layer_hook) for m, r in plan.hooked if r is not None]
    attentions = [m for m, r in plan.hooked if r is None]
    for m in attentions:  # the layer's fused forward is replaced, for this call only, by the tapped one
        m.forward = attention_forward(m)
    try:
        with torch.enable_grad():
            out = model(inputs)
    finally:
        for h in handles:
            h.remove()
        for m in attentions:
            del m.forward
    if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != batch:
        raise FastPathUnavailable("the model output is not a tensor with the batch on axis 0")
    with torch.enable_grad():
        losses = per_example_losses(loss_fn, out, targets)
        if losses.grad_fn is None:
            return losses.detach()
        reached = _check_graph(losses.grad_fn, taps, plan, anchor)
        if reached:
            torch.autograd.backward(losses.sum(), inputs=[anchor])
    return losses.detach()


def accumulate(acc: Grads, key: str, rows: slice | None, value: Tensor, shape: tuple[int, ...]) -> None:
    """``acc[key] (+)= value`` (into rows ``rows`` of the parameter axis 0), never in place on inputs."""
    if rows is not None:
        if key not in acc:
            acc[key] = value.new_zeros(shape)
        acc[key][:, rows] += value
    else:
        acc[key] = value if key not in acc else acc[key] + value


def _owned(value: Tensor, like: Tensor, *inputs: Tensor) -> bool:
    """Whether ``value`` is a dense ``[b, *like.shape]`` tensor alone in a storage none of ``inputs`` uses.

    Such a rule result (e.g. a view of a temporary) can be returned to the caller as is, without a copy.
    """
    storage = value.untyped_storage()
    return (
        value.is_contiguous()
        and value.storage_offset() == 0
        and storage.nbytes() == value.numel() * value.element_size()
        and value.shape[1:] == like.shape
        and value.dtype == like.dtype
        and value.device == like.device
        and all(storage.data_ptr() != x.untyped_storage().data_ptr() for x in inputs)
    )


def _fast_grads(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, plan: Plan, out: Grads
) -> None:
    """Per-example gradients of one chunk by the hook fast path, written into ``out`` (``[b, ...]`` each).

    A key missing from ``out`` is filled by the first rule result for it: the result itself when it is a
    fresh dense tensor (no copy), else a new buffer; keys no layer reached are zero.
    """
    batch = inputs.shape[0]
    written: set[str] = set()

    def buffer(key: str) -> Tensor:
        if key not in out:
            out[key] = plan.params[key].new_empty(batch, *plan.params[key].shape)
        return out[key]

    def sink(call: Call, g: Tensor) -> None:
        fresh = {
            r: out[k]
            for r, (k, rows) in call.targets.items()
            if rows is None and k not in written and k in out
        }
        grads = call.rule.grad_sample(call.module, call.activation, g, frozenset(call.targets), fresh)
        for role, value in grads.items():
            key, rows = call.targets[role]
            if key not in written:
                written.add(key)
                if rows is None:
                    if key not in out and _owned(value, plan.params[key], g, call.activation):
                        out[key] = value
                    elif value is not out.get(key):
                        buffer(key).copy_(value)
                    continue
                buffer(key).zero_()
            buf = out[key]
            (buf if rows is None else buf[:, rows]).add_(value)
        call.activation = None

    hook_pass(model, loss_fn, inputs, targets, plan, sink)
    for key in plan.params.keys() - written:
        buffer(key).zero_()


def functorch_grads(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, plan: Plan) -> Grads:
    """Per-example gradients of one chunk by ``vmap(grad(loss_i))`` (the general fallback)."""
    params = {k: p.detach() for k, p in plan.params.items()}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    fixed.update(dict(model.named_buffers()))

    def loss_one(p: Grads, x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, (p, fixed), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    with torch.enable_grad():
        return vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")(params, inputs, targets)


def auto_chunk(plan: Plan) -> int:
    """``max(1, budget // (3 * P * itemsize))``, ``budget = min(2 GiB, available RAM / 4)``."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 << 30
    budget = min(_BUDGET_CAP, available // 4)
    per_example = 3 * sum(p.numel() * p.element_size() for p in plan.params.values())
    return max(1, budget // max(1, per_example))


def chunk_grads(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, plan: Plan, out: Grads
) -> None:
    """Per-example gradients of one chunk into ``out`` (fast path if the plan allows, else ``torch.func``).

    ``out`` holds a ``[b, *shape]`` buffer per key, or is empty: then the results are stored in it as made.
    """
    if not plan.uncovered:
        try:
            _fast_grads(model, loss_fn, inputs, targets, plan, out)
            return
        except FastPathUnavailable:
            plan.uncovered.append("<dynamic>")
    for k, v in functorch_grads(model, loss_fn, inputs, targets, plan).items():
        if k in out:
            out[k].copy_(v)
        else:
            out[k] = v.contiguous()


def per_example_grads(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *, chunk_size: int | None = None
) -> Grads:
    """Gradient of ``loss_fn(model(inputs[i:i+1]), targets[i:i+1])`` for every example ``i``.

    Caveats first: dropout draws a separate mask per example (see the module docstring); BatchNorm using
    batch statistics is refused; tied parameters appear once (first name in ``named_parameters()``) with
    the sum over their uses; frozen parameters are left out.

    Args:
        model: any module ``torch.func`` can trace; the fast path covers Linear, Conv1d/2d, Embedding,
            LayerNorm, GroupNorm and MultiheadAttention (see the module docstring for the fallback rule).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` with any reduction; it is always called on one
            example (``[1, ...]``), so the gradient is exactly that of the example's own loss.
        inputs: ``[B, ...]`` float features or integer token ids.
        targets: ``[B, ...]``.
        chunk_size: examples per pass (bounds memory); None picks it from a memory budget.

    Returns:
        ``{name: [B, *param.shape]}`` for every parameter with ``requires_grad``.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: batch sizes differ, the model has no trainable parameters, ``chunk_size < 1``, a
            BatchNorm layer uses batch statistics (the message names it), or ``loss_fn`` is not scalar.
    """
    batch = validate(model, loss_fn, inputs, targets)
    if chunk_size is not None:
        positive_int("chunk_size", chunk_size)
    plan = make_plan(model)
    step = chunk_size if chunk_size is not None else auto_chunk(plan)
    out: Grads = {}
    if step >= batch:  # one pass: the layer rules' own results become the output (no copies)
        chunk_grads(model, loss_fn, inputs, targets, plan, out)
        return {k: out[k] for k in plan.params}
    out = {k: p.new_empty(batch, *p.shape) for k, p in plan.params.items()}
    for start in range(0, batch, step):
        sl = slice(start, min(start + step, batch))
        chunk_grads(model, loss_fn, inputs[sl], targets[sl], plan, {k: v[sl] for k, v in out.items()})
    return out
