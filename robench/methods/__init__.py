"""Method registry. Importing this package registers every built-in method."""

from robench.methods.base import METHODS, Batch, Method, get_method, register_method, resolve_hparams
from robench.methods import standard as _standard  # noqa: F401  (registers methods)
from robench.methods import adv_bias as _adv_bias  # noqa: F401
from robench.methods import adv_noise as _adv_noise  # noqa: F401
from robench.methods import aug_baselines as _aug_baselines  # noqa: F401
from robench.methods import rand_conv as _rand_conv  # noqa: F401
from robench.methods import rand_mwm as _rand_mwm  # noqa: F401
from robench.methods import coop_latent as _coop_latent  # noqa: F401
from robench.methods import imbalance as _imbalance  # noqa: F401

__all__ = ["METHODS", "Batch", "Method", "get_method", "register_method", "resolve_hparams"]
from robench.methods import learned_aug as _learned_aug  # noqa: F401
