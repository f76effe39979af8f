"""Small reference models and the loader for users' own.

- :func:`cnn` (LeNet-style), :func:`mlp`, :func:`resnet` (GroupNorm, no BatchNorm) for images and signals;
- :func:`tiny_llama`, :func:`tiny_gpt2`: randomly initialised ``transformers`` causal LMs for tests;
- :func:`minilm` / :func:`minilm_embed`: the packaged all-MiniLM-L6-v2 sentence encoder, offline;
- :func:`load_model`: builtin names, ``"module:factory"`` strings and local Hugging Face folders.

Every builder takes ``seed`` (default 0) and initialises under a forked RNG, so the same arguments
give the same weights and the caller's global random state is left as it was.
"""

from gradinfo.models.cnn import cnn
from gradinfo.models.llm import tiny_gpt2, tiny_llama
from gradinfo.models.loading import BUILTINS, load_model
from gradinfo.models.minilm import Encoder, minilm, minilm_embed, minilm_path
from gradinfo.models.mlp import mlp
from gradinfo.models.resnet import resnet

__all__ = [
    "BUILTINS",
    "Encoder",
    "cnn",
    "load_model",
    "minilm",
    "minilm_embed",
    "minilm_path",
    "mlp",
    "resnet",
    "tiny_gpt2",
    "tiny_llama",
]
