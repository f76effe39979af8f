"""Flower integration: a client mod that defends outgoing updates, and a server strategy that audits them.

Both work with Flower's strategy API in which a client returns its new weights after local training
(``NumPyClient.fit`` -> ``FitRes``; the same path Flower's own ``fixedclipping_mod`` takes):

- :func:`transform_mod` builds a client mod ``mod(msg, context, call_next) -> Message``. On a train message
  it runs the client, takes the update u = theta_new - theta_round_start, applies a gradinfo
  ``GradTransform`` (clip, noise, top-k, quantise, sketch, ...) and sends theta_round_start + T(u). The
  transform's state (e.g. its noise step counter) is kept per client in ``context.state`` across rounds.
- :class:`AuditingStrategy` wraps any Flower ``Strategy`` (e.g. ``FedAvg``). Before aggregating each round it
  rebuilds what the threat model of :mod:`gradinfo.privacy.threat` gives an honest-but-curious server, a
  ``SharedUpdate`` and the round-start model, runs the chosen attacks on every client's update, and logs one
  record per (client, attack), then delegates aggregation unchanged.

What the server knows: the round-start weights (it sent them), the weights each client returns, and the
training hyperparameters it set, which clients echo in their fit metrics: ``"lr"`` and ``"local_steps"``
(required), ``"batch_size"`` (else ``FitRes.num_examples``) and optionally ``"defense"`` (a description) and
``"partition_id"`` (used as the client's name in the log, else Flower's node id). With one local step the
update is the gradient g = (theta_0 - theta_1) / lr; with K > 1 steps it is the delta theta_0 - theta_K.

Arrays travel in the order of ``model.state_dict()`` (Flower's PyTorch convention), so the names of the
arrays are the state-dict keys; buffers are in the update but only trainable parameters reach the attack.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.common import (
    ConfigRecord,
    Context,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Message,
    MessageType,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy
from torch import Tensor, nn

from gradinfo.core.types import Grads, State
from gradinfo.privacy.metrics import psnr
from gradinfo.privacy.threat import Reconstruction, SharedUpdate
from gradinfo.transform import GradTransform

Attack = Callable[..., Reconstruction]
Mod = Callable[[Message, Context, Callable[[Message, Context], Message]], Message]
_STATE_KEY = "gradinfo.transform_mod"


def _to_grads(arrays: Sequence[np.ndarray], names: Sequence[str]) -> Grads:
    return {n: torch.from_numpy(np.array(a, copy=True)) for n, a in zip(names, arrays, strict=True)}


def _dump_state(state: State) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _load_state(data: bytes) -> State:
    return torch.load(io.BytesIO(data), weights_only=True)


def transform_mod(
    transform: GradTransform | Callable[[int], GradTransform], names: Sequence[str] | None = None
) -> Mod:
    """A Flower client mod applying ``transform`` to the client's update before it leaves the client.

    The client's reply theta_new becomes theta_0 + T(theta_new - theta_0), theta_0 the round-start weights
    the server sent. Messages other than train messages, and replies carrying an error, pass unchanged.
    Floating arrays are transformed; integer arrays (counters) are sent as the client left them.

    Caveat: a seeded transform (``add_gaussian_noise(std, seed)``) draws the same noise on every client; pass
    a factory ``node_id -> GradTransform`` to seed each client differently.

    Args:
        transform: a ``GradTransform``, or a callable building one from the client's Flower node id.
        names: names of the arrays, in order (e.g. ``list(model.state_dict())``), as the transform sees them;
            None names them ``"0"``, ``"1"``, ... (only matters for transforms that look at names).

    Returns:
        ``mod(msg, context, call_next) -> Message`` for ``ClientApp(client_fn=..., mods=[mod])``.

    Raises:
        TypeError: ``transform`` is neither a ``GradTransform`` nor callable, or ``names`` holds a non-string.
    """
    if not isinstance(transform, GradTransform) and not callable(transform):
        raise TypeError(
            f"transform must be a gradinfo GradTransform or a callable node_id -> GradTransform, "
            f"got {type(transform).__name__}"
        )
    if names is not None:
        names = list(names)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be strings (e.g. list(model.state_dict())), got {names[:5]!r}")

    def mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        start = parameters_to_ndarrays(compat.recorddict_to_fitins(msg.content, keep_input=True).parameters)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        fit_res = compat.recorddict_to_fitres(reply.content, keep_input=True)
        new = parameters_to_ndarrays(fit_res.parameters)
        keys = names if names is not None else [str(i) for i in range(len(new))]
        if len(keys) != len(new) or len(start) != len(new):
            raise ValueError(
                f"transform_mod: the client returned {len(new)} arrays for {len(start)} sent and "
                f"{len(keys)} names; they must agree"
            )
        floating = [k for k, a in zip(keys, new, strict=True) if np.issubdtype(a.dtype, np.floating)]
        theta0, theta = _to_grads(start, keys), _to_grads(new, keys)
        update = {k: theta[k] - theta0[k] for k in floating}  # theta_new - theta_0
        tf = transform if isinstance(transform, GradTransform) else transform(context.node_id)
        params = {k: theta0[k] for k in floating}
        record = context.state.config_records.get(_STATE_KEY)
        state = _load_state(record["state"]) if record is not None else tf.init(params)  # type: ignore[arg-type]
        defended, state = tf.update(update, state, params)
        context.state.config_records[_STATE_KEY] = ConfigRecord({"state": _dump_state(state)})
        out = [
            (theta0[k] + defended[k]).numpy().astype(a.dtype) if k in defended else a
            for k, a in zip(keys, new, strict=True)
        ]
        fit_res.parameters = ndarrays_to_parameters(out)
        reply.content = compat.fitres_to_recorddict(fit_res, keep_input=True)
        return reply

    return mod


def _metric(metrics: Mapping[str, Scalar], key: str, client: str) -> float:
    if key not in metrics:
        raise ValueError(
            f"client {client} did not report {key!r} in its fit metrics; AuditingStrategy needs 'lr' and "
            "'local_steps' (the hyperparameters the server set) to rebuild the update"
        )
    return float(metrics[key])  # type: ignore[arg-type]


class AuditingStrategy(Strategy):
    """A Flower ``Strategy`` that runs gradient-inversion attacks on every client update, then aggregates.

    One record is logged per (round, client, attack): ``round``, ``client``, ``attack``, ``batch_size``,
    ``local_steps``, ``update_norm``, ``seconds``, ``loss`` (the attack's final objective, None for
    closed-form attacks), ``psnr`` (mean over the batch, when ``ground_truth`` has the client's inputs and
    the shapes match) or ``error`` (the message, when an attack raised: the audit goes on). Records
    accumulate in ``records`` and, with ``log_path``, are appended to that JSON-lines file as they are made.

    Args:
        strategy: the Flower strategy doing the real work (e.g. ``flwr.server.strategy.FedAvg``).
        attacks: ``{name: attack}``, each ``attack(model, update, **attack_kwargs[name]) -> Reconstruction``
            (e.g. ``gradinfo.privacy.attacks.inverting_gradients``).
        model_fn: builds the global model architecture (any weights); it receives the round-start weights.
        attack_kwargs: keyword arguments per attack name (``{"dlg": {"iterations": 50}}``).
        ground_truth: ``{client name: inputs [B, ...]}`` for testing, to score reconstructions by PSNR.
        log_path: a JSON-lines file to append the records to, or None.

    Raises:
        TypeError: a wrapped object that is not a ``Strategy``, an attack that is not callable, or a
            ``model_fn`` that is not callable.
        ValueError: no attacks, or ``attack_kwargs`` naming an attack not in ``attacks``.
    """

    def __init__(
        self,
        strategy: Strategy,
        attacks: Mapping[str, Attack],
        model_fn: Callable[[], nn.Module],
        *,
        attack_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        ground_truth: Mapping[str, Tensor] | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(
                f"strategy must be a flwr Strategy (e.g. FedAvg()), got {type(strategy).__name__}"
            )
        if not isinstance(attacks, Mapping) or not attacks:
            raise ValueError(f"attacks must be a non-empty mapping name -> attack callable, got {attacks!r}")
        bad = [name for name, fn in attacks.items() if not callable(fn)]
        if bad:
            raise TypeError(f"attacks must map names to callables; not callable: {bad}")
        if not callable(model_fn):
            raise TypeError(
                f"model_fn must be a callable returning an nn.Module, got {type(model_fn).__name__}"
            )
        extra = sorted(set(attack_kwargs or {}) - set(attacks))
        if extra:
            raise ValueError(f"attack_kwargs names attacks not in attacks: {extra}; known: {sorted(attacks)}")
        self.strategy = strategy
        self.attacks = dict(attacks)
        self.model_fn = model_fn
        self.attack_kwargs = {name: dict((attack_kwargs or {}).get(name, {})) for name in attacks}
        self.ground_truth = dict(ground_truth or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.records: list[dict[str, Any]] = []
        self._round_start: dict[int, list[np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"AuditingStrategy({self.strategy!r}, attacks={sorted(self.attacks)})"

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self._round_start = {server_round: parameters_to_ndarrays(parameters)}  # the weights sent this round
        return self.strategy.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        start = self._round_start.get(server_round)
        if start is not None:
            for proxy, fit_res in results:
                self._audit(server_round, start, proxy, fit_res)
        return self.strategy.aggregate_fit(server_round, results, failures)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)

    def _shared_update(
        self, model: nn.Module, start: list[np.ndarray], fit_res: FitRes, client: str
    ) -> SharedUpdate:
        """The client's update as the threat model states it; loads the round-start weights into model."""
        keys = list(model.state_dict())
        new = parameters_to_ndarrays(fit_res.parameters)
        if len(keys) != len(start) or len(new) != len(start):
            raise ValueError(
                f"model_fn's model has {len(keys)} state-dict entries but the server sent {len(start)} "
                f"arrays and client {client} returned {len(new)}; arrays must follow model.state_dict() order"
            )
        theta0, theta = _to_grads(start, keys), _to_grads(new, keys)
        model.load_state_dict(theta0)
        metrics = fit_res.metrics
        lr = _metric(metrics, "lr", client)
        steps = int(_metric(metrics, "local_steps", client))
        batch = int(metrics.get("batch_size", fit_res.num_examples))  # type: ignore[arg-type]
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        delta = {n: theta0[n] - theta[n] for n in trainable}  # theta_0 - theta_K
        grads = {n: d / lr for n, d in delta.items()} if steps == 1 else delta
        return SharedUpdate(
            grads=grads,
            kind="gradient" if steps == 1 else "delta",
            batch_size=batch,
            local_steps=steps,
            lr=lr,
            defense=str(metrics.get("defense", "unknown")),
        )

    def _audit(self, server_round: int, start: list[np.ndarray], proxy: ClientProxy, fit_res: FitRes) -> None:
        client = str(fit_res.metrics.get("partition_id", proxy.cid))
        model = self.model_fn()
        update = self._shared_update(model, start, fit_res, client)
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in update.grads.values()))
        for name, attack in self.attacks.items():
            record: dict[str, Any] = {
                "round": server_round,
                "client": client,
                "attack": name,
                "batch_size": update.batch_size,
                "local_steps": update.local_steps,
                "update_norm": norm,
            }
            began = time.perf_counter()
            try:
                rec = attack(model, update, **self.attack_kwargs[name])
            except Exception as error:  # an audit reports a failing attack and goes on
                record["error"] = f"{type(error).__name__}: {error}"
            else:
                record["loss"] = rec.loss_trace[-1] if rec.loss_trace else None
                truth = self.ground_truth.get(client)
                if truth is not None and truth.shape == rec.inputs.shape and rec.inputs.is_floating_point():
                    record["psnr"] = float(psnr(rec.inputs.detach().cpu(), truth.cpu()).mean())
            record["seconds"] = time.perf_counter() - began
            self.records.append(record)
            if self.log_path is not None:
                with self.log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
