"""Method registry. Importing this package registers every built-in method."""

from robench.methods.base import METHODS, Batch, Method, get_method, register_method, resolve_hparams
from robench.methods import standard as _standard  # noqa: F401  (registers methods)
from robench.methods import coop_latent as _coop_latent  # noqa: F401

__all__ = ["METHODS", "Batch", "Method", "get_method", "register_method", "resolve_hparams"]
