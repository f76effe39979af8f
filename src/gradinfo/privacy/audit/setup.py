"""Everything an audit needs before its first cell: data, model, client split, DP noise, checked together.

:func:`prepare` loads the data, builds the model, checks that they fit each other and the chosen
defenses, splits the training data over the clients (non-IID, 3 classes per client) and computes the
DP-SGD noise multiplier of every DP setting. Every mistake found is collected and raised once as an
:class:`~gradinfo.core.jobconfig.JobConfigError`, one line each.

DP accounting. A utility run's client takes ``local_steps`` DP-SGD steps per round on Poisson-sampled
minibatches of its own data (each of its n_k examples joins a step with probability q_k = b / n_k, b =
``LOCAL_BATCH``; see :mod:`gradinfo.privacy.fedavg`), so each example's privacy loss is that of
``rounds * local_steps`` subsampled Gaussian mechanisms. Sigma is
``noise_for_epsilon(target, q, rounds * local_steps, delta=1e-5)`` (dp-accounting's RDP accountant) with
q = max_k q_k = b / min_k n_k: every client's epsilon is at most the target. The attacked update of a DP
cell is one step of that run, with the same sigma and clip.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.io
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.core.jobconfig import JobConfigError
from gradinfo.datasets import load
from gradinfo.models import cnn, load_model
from gradinfo.privacy.accounting import epsilon, noise_for_epsilon
from gradinfo.privacy.audit.config import IMAGE_SUFFIXES, AuditConfig
from gradinfo.privacy.fedavg import Client, split_non_iid

DELTA = 1e-5
CLIP = 1.0
DP_TARGETS: dict[str, float] = {"dp-eps8": 8.0, "dp-eps1": 1.0, "sketch-dp": 8.0}
"""Target epsilon of each DP defense."""
LOCAL_BATCH = 32
"""Examples per local SGD step of the utility runs (drawn without replacement, fresh each step)."""
IMAGE_SIDE = 32
TEST_SHARE = 0.2
CLASSES_PER_CLIENT = 3


@dataclass(frozen=True, eq=False)
class Setup:
    """The prepared audit: data, model, clients and DP noise.

    Attributes:
        config: the validated config.
        train, test: ``(inputs [N, C, H, W] in [0, 1], labels [N])``.
        num_classes: K.
        input_shape: ``(C, H, W)``.
        model_fn: builds the round-start model (the same weights at every call), in train mode.
        model_name: how the report names the model.
        clients, tests: per-client ``(inputs, labels)`` of the train and test split (same label mix).
        sample_rate: q, the largest client's Poisson sampling rate min(1, LOCAL_BATCH / min_k n_k).
        sigmas: DP-SGD noise multiplier per DP defense in the config.
        epsilons: the RDP epsilon those sigmas give over the utility run at rate q (<= the target).
        num_params: d, the trainable parameter count.
        sketch_dim: ceil(d / 10).
    """

    config: AuditConfig
    train: Client
    test: Client
    num_classes: int
    input_shape: tuple[int, ...]
    model_fn: Callable[[], nn.Module]
    model_name: str
    clients: list[Client]
    tests: list[Client]
    sample_rate: float
    sigmas: dict[str, float]
    epsilons: dict[str, float]
    num_params: int
    sketch_dim: int


def default_model(num_classes: int, channels: int, side: int, seed: int) -> nn.Module:
    """The default audited model: a LeNet-style CNN (width 16, hidden 128) with dropout 0.25 before fc2.

    ``gradinfo.models.cnn``'s default size, the model of the inversion claim checks and of
    ``benchmarks/attacks.py``.
    """
    return cnn(num_classes=num_classes, in_channels=channels, image_size=side, width=16, hidden=128,
               dropout=0.25, seed=seed)  # fmt: skip


def _split(x: Tensor, y: Tensor, seed: int) -> tuple[Client, Client]:
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))  # [N]
    cut = len(y) - max(1, round(TEST_SHARE * len(y)))
    train, test = order[:cut].sort().values, order[cut:].sort().values
    return (x[train], y[train]), (x[test], y[test])


def _folder(path: Path, seed: int) -> tuple[Client, Client]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--data: folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    classes = sorted({p.parent for p in files})
    label = {c: i for i, c in enumerate(classes)}
    images, labels = [], []
    for p in files:
        try:
            image = np.asarray(skimage.io.imread(p))
        except (OSError, ValueError) as err:
            raise ValueError(f"--data: cannot read image {str(p)!r} ({err})") from err
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        img = torch.as_tensor(image[..., :3].astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0))
        img = img.permute(2, 0, 1)[None]  # [1, 3, H, W]
        images.append(F.interpolate(img, size=(IMAGE_SIDE, IMAGE_SIDE), mode="bilinear", antialias=True)[0])
        labels.append(label[p.parent])
    x = torch.stack(images).clamp(0, 1)  # [N, 3, 32, 32]
    if len(x) < 2:
        raise ValueError(f"--data: folder {str(path)!r} holds {len(x)} image; need at least 2")
    return _split(x, torch.tensor(labels), seed)


def _npz(path: Path, seed: int) -> tuple[Client, Client]:
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"--data: cannot read {str(path)!r} as .npz ({err})") from err
    missing = [k for k in ("x", "y") if k not in arrays.files]
    if missing:
        raise ValueError(
            f"--data: {str(path)!r} must contain arrays 'x' and 'y'; missing {', '.join(missing)} "
            f"(it has {', '.join(arrays.files) or 'no arrays'})"
        )
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"--data: {str(path)!r} needs x [N, C, H, W] (or [N, H, W]) and y [N] with N >= 2, got x "
            f"{arrays['x'].shape} and y {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"--data: y must hold integer class ids >= 0, got dtype {y.dtype}")
    xt = torch.as_tensor(x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0))
    if float(xt.min()) < 0 or float(xt.max()) > 1:
        raise ValueError("--data: x must be uint8 or floats in [0, 1] (the attack's box)")
    return _split(xt, torch.as_tensor(y, dtype=torch.int64), seed)


def load_data(spec: str, seed: int) -> tuple[Client, Client]:
    """``(train, test)`` for a built-in name, an image folder or an ``.npz`` (see ``AuditConfig.data``).

    Raises:
        ValueError: unreadable or unsuitable data; the message starts with ``--data:``.
    """
    if spec == "photos":
        train, test = (
            load("photos", split="train", seed=seed, size=32),
            load("photos", split="test", seed=seed),
        )
        return (train.x, train.y), (test.x, test.y)
    if spec == "digits":
        train, test = load("digits", split="train", seed=seed), load("digits", split="test", seed=seed)
        return (train.x, train.y), (test.x, test.y)
    path = Path(spec).expanduser()
    return _npz(path, seed) if path.suffix == ".npz" else _folder(path, seed)


def hyperfl_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Split a ``nn.Sequential`` ending in ``nn.Linear`` into (extractor, classifier head) for HyperFL.

    Raises:
        ValueError: the model is not such a Sequential.
    """
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear) or len(model) < 2:
        raise ValueError(
            "--defenses: hyperfl needs an nn.Sequential model whose last layer is the nn.Linear classifier "
            f"(the extractor is everything before it), got {type(model).__name__}"
        )
    return model[:-1], model[-1]


def _build_model(config: AuditConfig, num_classes: int, shape: tuple[int, ...]) -> tuple[nn.Module, str]:
    if config.model is None:
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(
                f"--model: the default CNN needs square images [C, S, S], got {shape}; pass --model"
            )
        return default_model(
            num_classes, shape[0], shape[1], config.seed
        ), "cnn (width 16, hidden 128, dropout 0.25)"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        try:
            model = load_model(config.model)
        except (ValueError, TypeError) as err:
            raise ValueError(f"--model: {err}") from err
        except Exception as err:  # a user factory may raise anything
            raise ValueError(f"--model: {config.model!r} raised {type(err).__name__}: {err}") from err
    return model, config.model


def _probe(model: nn.Module, shape: tuple[int, ...], num_classes: int) -> None:
    try:
        with torch.no_grad():
            out = copy.deepcopy(model).eval()(torch.rand(2, *shape))
    except Exception as err:  # a user model may raise anything on a wrong shape
        raise ValueError(f"--model: cannot run on a batch of shape {(2, *shape)}: {err}") from err
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[1] < num_classes:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"--model: must output logits [B, K] with K >= the data's {num_classes} classes, got {got}"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("--model: the model has no trainable parameters")


def prepare(config: AuditConfig) -> Setup:
    """Load and check everything; raise every mistake at once.

    Raises:
        JobConfigError: one line per mistake.
    """
    errors: list[str] = []
    data = model = None
    clients: list[Client] = []
    tests: list[Client] = []
    try:
        data = load_data(config.data, config.seed)
    except ValueError as err:
        errors.append(str(err))
    if data is not None:
        (x, y), test = data
        num_classes, shape = int(max(y.max(), test[1].max())) + 1, tuple(x.shape[1:])
        too_big = [b for b in config.batch_sizes if b > len(y)]
        if too_big:
            errors.append(f"--batch-sizes: {too_big} exceed the {len(y)} training examples")
        try:
            model, model_name = _build_model(config, num_classes, shape)
            _probe(model, shape, num_classes)
        except ValueError as err:
            errors.append(str(err))
            model = None
        if model is not None and "hyperfl" in config.defenses:
            try:
                hyperfl_parts(model)
            except ValueError as err:
                errors.append(str(err))
        m = min(CLASSES_PER_CLIENT, num_classes)
        try:
            clients = split_non_iid((x, y), config.clients, classes_per_client=m, seed=config.seed)
            tests = split_non_iid(test, config.clients, classes_per_client=m, seed=config.seed)
        except ValueError as err:
            errors.append(f"--clients: {err}")
    steps = config.rounds * config.local_steps
    rate = min(1.0, LOCAL_BATCH / min((len(c[1]) for c in clients), default=LOCAL_BATCH))
    sigmas, epsilons = {}, {}
    for name in config.defenses:
        if name in DP_TARGETS:
            try:
                sigmas[name] = noise_for_epsilon(DP_TARGETS[name], rate, steps, DELTA)
                epsilons[name] = epsilon(sigmas[name], rate, steps, DELTA)
            except ValueError as err:
                errors.append(f"--rounds/--local-steps: DP setting {name}: {err}")
    if errors:
        raise JobConfigError(errors)
    assert model is not None and data is not None  # every failure above appended an error
    template = model.train()
    num_params = sum(p.numel() for p in template.parameters() if p.requires_grad)
    return Setup(
        config=config,
        train=data[0],
        test=data[1],
        num_classes=num_classes,
        input_shape=shape,
        model_fn=lambda: copy.deepcopy(template),
        model_name=model_name,
        clients=clients,
        tests=tests,
        sample_rate=rate,
        sigmas=sigmas,
        epsilons=epsilons,
        num_params=num_params,
        sketch_dim=math.ceil(num_params / 10),
    )
