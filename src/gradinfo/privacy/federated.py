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

:func:`flower_fedavg` runs :func:`gradinfo.privacy.fedavg`'s computation through Flower's simulation engine
(Ray): the same local training per client (:func:`~gradinfo.privacy.fedavg.local_update`, same seeds), the
defense's ``DPSGD`` inside the client and its transforms in a :func:`transform_mod`, Flower's ``FedAvg``
strategy weighting clients by their number of examples, and server-side evaluation after every round.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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

from gradinfo.core.types import Grads, LossFn, State
from gradinfo.privacy.fedavg import Client, FedHistory, accuracy, check_run, client_seed, local_update
from gradinfo.privacy.metrics import psnr
from gradinfo.privacy.threat import Defense, Reconstruction, SharedUpdate, split_defense
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


def _load_arrays(model: nn.Module, arrays: Sequence[np.ndarray]) -> None:
    keys = list(model.state_dict())
    model.load_state_dict(
        {k: torch.from_numpy(np.array(a, copy=True)) for k, a in zip(keys, arrays, strict=True)}
    )


def _arrays(model: nn.Module) -> list[np.ndarray]:
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def flower_fedavg(
    model_fn: Callable[[], nn.Module],
    clients: list[Client],
    rounds: int,
    local_steps: int,
    lr: float,
    *,
    test: Client,
    defense: Defense | None = None,
    batch_size: int | None = None,
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
    num_cpus: int = 2,
) -> FedHistory:
    """:func:`gradinfo.privacy.fedavg` through Flower's simulation engine (Ray): one virtual client per pair.

    Round t (Flower's round t + 1): Flower's ``FedAvg`` sends the global weights to every client; client k
    loads them and runs :func:`~gradinfo.privacy.fedavg.local_update` with the seed ``fedavg`` uses
    (``DPSGD`` steps when the defense has one); the defense's transforms act on the outgoing update
    theta_new - theta_0 in a :func:`transform_mod` whose state Flower keeps per client across rounds; the
    strategy averages the returned weights by number of examples, and ``evaluate_fn`` scores the new
    global model on ``test``. Mathematically the run is :func:`~gradinfo.privacy.fedavg.fedavg`'s, up to
    float rounding (averaging weights instead of deltas) and the sign of the update the transforms see
    (theta_new - theta_0, where ``fedavg`` transforms theta_0 - theta_new: the same for linear and
    sign-symmetric transforms such as sketches, top-k and stochastic quantisation).

    Args:
        model_fn, clients, rounds, local_steps, lr, defense, batch_size, loss_fn, seed: as for ``fedavg``.
        test: one ``(inputs, targets)`` pair scored with the global model (no personal parameters here).
        num_cpus: CPUs Ray may use; each virtual client takes one.

    Returns:
        A :class:`~gradinfo.privacy.fedavg.FedHistory` (``personal`` holds empty dicts).

    Raises:
        TypeError, ValueError: a bad argument, before Ray starts.
    """
    from flwr.client import ClientApp, NumPyClient
    from flwr.server import ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    if not isinstance(test, tuple):
        raise TypeError(f"test must be one (inputs, targets) pair, got {type(test).__name__}")
    model, clients, tests = check_run(
        model_fn, clients, rounds, local_steps, lr, test, defense, batch_size, seed
    )
    num_cpus = int(num_cpus) if isinstance(num_cpus, int) and num_cpus >= 1 else _bad_cpus(num_cpus)
    dp, transform = split_defense(defense)
    names = list(model.state_dict())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if transform is not None and set(names) != trainable:
        raise ValueError(
            "flower_fedavg applies the defense's transforms to every state-dict array; the model has buffers "
            f"or frozen parameters ({', '.join(sorted(set(names) - trainable)[:5])}): use fedavg for it"
        )
    begin = time.perf_counter()
    curve: list[float] = []
    losses: list[float] = []

    class _FedClient(NumPyClient):  # type: ignore[misc]
        def __init__(self, k: int) -> None:
            self.k = k

        def fit(
            self, parameters: list[np.ndarray], config: dict[str, Scalar]
        ) -> tuple[list[np.ndarray], int, dict]:
            torch.set_num_threads(1)
            local = model_fn()
            _load_arrays(local, parameters)
            local.train()
            seed_k = client_seed(seed, int(config["round"]) - 1, self.k)
            first, _ = local_update(local, clients[self.k], loss_fn, local_steps, lr, batch_size, dp, seed_k)
            return _arrays(local), len(clients[self.k][1]), {"loss": first}

    def client_fn(context: Context) -> Any:
        return _FedClient(int(context.node_config["partition-id"])).to_client()

    def evaluate(
        server_round: int, arrays: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[float, dict]:
        _load_arrays(model, arrays)
        curve.append(accuracy(model, *tests[0]))
        return 0.0, {"accuracy": curve[-1]}

    def mean_loss(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
        losses.append(float(np.mean([float(m["loss"]) for _, m in metrics])))  # type: ignore[arg-type]
        return {"loss": losses[-1]}

    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=len(clients), min_evaluate_clients=0,
        min_available_clients=len(clients), evaluate_fn=evaluate, on_fit_config_fn=lambda r: {"round": r},
        initial_parameters=ndarrays_to_parameters(_arrays(model)), fit_metrics_aggregation_fn=mean_loss,
    )  # fmt: skip
    server = ServerApp(
        server_fn=lambda context: ServerAppComponents(
            strategy=strategy, config=ServerConfig(num_rounds=rounds)
        )
    )
    mods = [transform_mod(transform, names)] if transform is not None else []
    run_simulation(
        server,
        ClientApp(client_fn=client_fn, mods=mods),
        num_supernodes=len(clients),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": num_cpus, "include_dashboard": False, "log_to_driver": False},
        },
    )
    if len(curve) != rounds + 1:
        raise RuntimeError(
            f"Flower's simulation ended after {len(curve) - 1} of {rounds} rounds (a client failed)"
        )
    return FedHistory(curve, losses, copy.deepcopy(model), [{} for _ in clients], time.perf_counter() - begin)


def _bad_cpus(value: object) -> int:
    raise ValueError(f"num_cpus must be an int >= 1, got {value!r}")
