"""``load_model(spec)``: one entry point for builtin models, users' factories and Hugging Face folders.

A ``spec`` is read in this order:

1. a builtin name: ``cnn``, ``mlp``, ``resnet``, ``tiny-llama``, ``tiny-gpt2``, ``minilm``;
2. an existing local directory holding ``config.json`` (a ``save_pretrained`` folder): loaded with the
   class named in ``config.architectures`` (so heads such as ``*ForCausalLM`` are kept), else
   ``AutoModel``, always with ``local_files_only=True`` and, unless given, ``attn_implementation="eager"``
   (plain attention that ``torch.func`` traces, so per-example gradients work);
3. ``"module:factory"``: ``importlib.import_module(module)``, then ``factory`` (a dotted attribute path
   is allowed, ``"pkg.mod:Class.build"``) is called with the keyword arguments;
4. anything else with a ``/`` is a Hugging Face hub id, looked up only in the local cache
   (``local_files_only=True``): nothing is ever downloaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import transformers
from torch import nn

from gradinfo.models.cnn import cnn
from gradinfo.models.llm import tiny_gpt2, tiny_llama
from gradinfo.models.minilm import minilm
from gradinfo.models.mlp import mlp
from gradinfo.models.resnet import resnet


def _minilm_module() -> nn.Module:
    return minilm().model


BUILTINS: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn,
    "mlp": mlp,
    "resnet": resnet,
    "tiny-llama": tiny_llama,
    "tiny-gpt2": tiny_gpt2,
    "minilm": _minilm_module,
}


def load_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build or load the model that ``spec`` names (see the module docstring for the forms).

    Args:
        spec: a builtin name, a local Hugging Face folder, ``"module:factory"`` or a cached hub id.
        **kwargs: passed to the builtin builder or the factory; for Hugging Face models, to
            ``from_pretrained`` (for example ``torch_dtype``).

    Returns:
        The ``nn.Module``. Hugging Face models come back in eval mode, as ``from_pretrained`` gives them.

    Raises:
        TypeError: ``spec`` is not a string, or a factory returned something that is not an ``nn.Module``.
        ValueError: ``spec`` matches none of the forms, its module or factory cannot be found, or a hub
            id is not in the local cache; the message names the spec.
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"spec must be a non-empty string, got {type(spec).__name__} {spec!r}")
    if spec in BUILTINS:
        return BUILTINS[spec](**kwargs)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"model folder {spec!r} has no config.json; save it with model.save_pretrained(folder)"
            )
        return _from_pretrained(str(path), spec, kwargs)
    if ":" in spec:
        return _from_factory(spec, kwargs)
    if "/" in spec:
        return _from_pretrained(spec, spec, kwargs)
    raise ValueError(
        f"cannot load model {spec!r}: it is not a builtin ({', '.join(BUILTINS)}), an existing folder, "
        "a 'module:factory' string or a Hugging Face id ('owner/name')"
    )


def _from_factory(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model spec {spec!r} must look like 'module:factory', with both parts non-empty")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model spec {spec!r}: cannot import module {module_name!r} ({err})") from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"model spec {spec!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"model spec {spec!r}: {attr!r} is a {type(target).__name__}, not a callable factory")
    model = target(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model spec {spec!r}: the factory returned a {type(model).__name__}, expected an nn.Module"
        )
    return model


def _from_pretrained(source: str, spec: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"model spec {spec!r}: no local Hugging Face model found (gradinfo never downloads); download "
            "it once with `hf download <id> --local-dir <folder>` and pass the folder"
        ) from err
    architectures = getattr(config, "architectures", None) or []
    model_class = next((getattr(transformers, a) for a in architectures if hasattr(transformers, a)), None)
    model_class = model_class or transformers.AutoModel
    options = {"attn_implementation": "eager", **kwargs}
    return model_class.from_pretrained(source, local_files_only=True, **options)
