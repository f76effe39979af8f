"""Flower integration: the transform mod and the auditing strategy, in Flower's simulation engine (Ray)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flwr.client import ClientApp, NumPyClient
from flwr.common import (
    Code,
    ConfigRecord,
    Context,
    FitIns,
    FitRes,
    Message,
    MessageType,
    Metadata,
    RecordDict,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation
from torch import Tensor, nn

from gradinfo.datasets import load
from gradinfo.models import mlp
from gradinfo.privacy import DPSGD, Reconstruction, SharedUpdate, fedavg
from gradinfo.privacy.federated import AuditingStrategy, flower_fedavg, transform_mod
from gradinfo.transform import add_gaussian_noise, clip_by_global_norm, topk_sparsify

CLIENTS, ROUNDS, BATCH, STEPS, LR, MAX_NORM = 2, 2, 4, 2, 0.5, 0.05


def _model() -> nn.Module:
    return mlp(64, 10, hidden=(8,), seed=0)


def _data(partition: int) -> tuple[Tensor, Tensor]:
    digits = load("digits", seed=0)
    sl = slice(partition * BATCH, (partition + 1) * BATCH)
    return digits.x[sl].flatten(1), digits.y[sl]  # [B, 64], [B]


def _local_train(model: nn.Module, partition: int) -> None:
    x, y = _data(partition)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def _arrays(model: nn.Module) -> list[np.ndarray]:
    return [v.detach().cpu().numpy() for v in model.state_dict().values()]


def _load(model: nn.Module, arrays: list[np.ndarray]) -> None:
    keys = list(model.state_dict())
    model.load_state_dict({k: torch.from_numpy(a) for k, a in zip(keys, arrays, strict=True)})


class _Client(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.model = _model()

    def get_parameters(self, config: dict) -> list[np.ndarray]:
        return _arrays(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        _load(self.model, parameters)
        _local_train(self.model, self.partition)
        metrics = {"lr": LR, "local_steps": STEPS, "batch_size": BATCH, "partition_id": self.partition}
        return _arrays(self.model), BATCH, metrics


def _client_fn(context: Context) -> object:
    return _Client(int(context.node_config["partition-id"])).to_client()


@pytest.mark.slow  # Ray start-up: about a minute on 2 shared cores
def test_simulation_mod_clips_and_strategy_audits(tmp_path: Path) -> None:
    seen: list[tuple[dict[str, Tensor], SharedUpdate]] = []

    def recorder(model: nn.Module, update: SharedUpdate) -> Reconstruction:
        seen.append(({k: v.clone() for k, v in model.state_dict().items()}, update))
        return Reconstruction(torch.zeros(1, 64), None, [1.5, 0.25], 0.0)

    def broken(model: nn.Module, update: SharedUpdate) -> Reconstruction:
        raise ValueError("unsupported model")

    log = tmp_path / "leakage.jsonl"
    strategy = AuditingStrategy(
        FedAvg(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=CLIENTS, min_available_clients=CLIENTS
        ),
        {"recorder": recorder, "broken": broken},
        _model,
        log_path=log,
    )
    server = ServerApp(
        server_fn=lambda context: ServerAppComponents(
            strategy=strategy, config=ServerConfig(num_rounds=ROUNDS)
        )
    )
    names = list(_model().state_dict())
    client = ClientApp(client_fn=_client_fn, mods=[transform_mod(clip_by_global_norm(MAX_NORM), names)])
    run_simulation(
        server,
        client,
        num_supernodes=CLIENTS,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False},
        },
    )

    # one record per client, per round, per attack; in memory and in the JSON-lines file
    assert len(strategy.records) == CLIENTS * ROUNDS * 2
    assert [json.loads(line) for line in log.read_text().splitlines()] == strategy.records
    for attack in ("recorder", "broken"):
        got = sorted((r["round"], r["client"]) for r in strategy.records if r["attack"] == attack)
        assert got == sorted((rnd, str(c)) for rnd in range(1, ROUNDS + 1) for c in range(CLIENTS))
    assert all(r["loss"] == 0.25 for r in strategy.records if r["attack"] == "recorder")
    assert all(
        r["error"] == "ValueError: unsupported model" for r in strategy.records if r["attack"] == "broken"
    )

    # what the server received is the clipped local update: rebuild it from the round-start model
    clients = [r["client"] for r in strategy.records if r["attack"] == "recorder"]
    assert len(seen) == CLIENTS * ROUNDS
    for (start, update), client_name in zip(seen, clients, strict=True):
        assert update.kind == "delta" and update.local_steps == STEPS and update.batch_size == BATCH
        reference = _model()
        reference.load_state_dict(start)
        _local_train(reference, int(client_name))
        raw = {n: start[n] - p.detach() for n, p in reference.named_parameters()}  # theta_0 - theta_K
        norm = torch.sqrt(sum(g.double().pow(2).sum() for g in raw.values()))
        assert norm > MAX_NORM  # the clip is active
        for n, g in raw.items():
            torch.testing.assert_close(update.grads[n], g * (MAX_NORM / norm).float(), rtol=1e-4, atol=1e-6)


def test_mod_keeps_transform_state_per_client_across_rounds() -> None:
    """The mod alone, driven by hand-made messages: seeded noise advances per round via context.state."""
    theta0 = [np.zeros((3,), dtype=np.float32), np.arange(2, dtype=np.int64)]
    new = [np.ones((3,), dtype=np.float32), np.arange(2, dtype=np.int64) + 5]
    fit_ins = compat.fitins_to_recorddict(FitIns(ndarrays_to_parameters(theta0), {}), keep_input=True)
    meta = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=0,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=60.0,
        message_type=MessageType.TRAIN,
    )
    msg = Message(content=fit_ins, metadata=meta)

    def client(message: Message, context: Context) -> Message:
        res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(new), 1, {})
        return Message(content=compat.fitres_to_recorddict(res, keep_input=True), reply_to=message)

    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    mod = transform_mod(add_gaussian_noise(0.1, seed=3))
    sent = []
    for _ in range(2):
        reply = mod(msg, context, client)
        sent.append(parameters_to_ndarrays(compat.recorddict_to_fitres(reply.content, True).parameters))
    noise = add_gaussian_noise(0.1, seed=3)
    state = noise.init({"0": torch.zeros(3)})
    for arrays in sent:
        expected, state = noise.update({"0": torch.ones(3)}, state, None)
        np.testing.assert_allclose(arrays[0], expected["0"].numpy(), rtol=0, atol=1e-7)
        np.testing.assert_array_equal(arrays[1], new[1])  # integer arrays pass as the client left them
    assert not np.allclose(sent[0][0], sent[1][0])  # the noise step counter advanced between rounds
    assert isinstance(context.state.config_records["gradinfo.transform_mod"], ConfigRecord)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="GradTransform"):
        transform_mod(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="names"):
        transform_mod(clip_by_global_norm(1.0), names=[1, 2])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Strategy"):
        AuditingStrategy(object(), {"a": lambda m, u: None}, _model)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        AuditingStrategy(FedAvg(), {}, _model)
    with pytest.raises(TypeError, match="callables"):
        AuditingStrategy(FedAvg(), {"a": 3}, _model)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not in attacks"):
        AuditingStrategy(FedAvg(), {"a": lambda m, u: None}, _model, attack_kwargs={"b": {}})


@pytest.mark.slow  # Ray start-up: about a minute on 2 shared cores
def test_flower_fedavg_runs_the_in_process_fedavg() -> None:
    digits = load("digits", seed=0)
    x, y = digits.x.flatten(1), digits.y  # [N, 64], [N]
    clients = [(x[:40], y[:40]), (x[40:100], y[40:100])]
    test = (x[100:300], y[100:300])
    defense = (DPSGD(1.0, 0.3), topk_sparsify(0.5))
    args = {"test": test, "defense": defense, "seed": 3}
    ref = fedavg(_model, clients, 2, 2, 0.5, **args)
    got = flower_fedavg(_model, clients, 2, 2, 0.5, **args)
    assert len(got.accuracy) == 3 and len(got.loss) == 2
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-5)
    for (n, p), q in zip(got.model.named_parameters(), ref.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)
    np.testing.assert_allclose(got.accuracy, ref.accuracy, atol=0.011)  # at most 2 of 200 flip on rounding
