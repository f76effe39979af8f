"""gradinfo: gradient information for PyTorch — capture it, transform it, use it."""

from importlib.metadata import PackageNotFoundError, version

from gradinfo.capture import per_example_grads

try:
    __version__ = version("gradinfo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__", "per_example_grads"]
