"""Model families. Importing this package registers the built-in ones."""

from madloop.models import diffusion, flow, gan, gaussian, gmm, unet  # noqa: F401  (registration)
from madloop.models.base import Algorithm, Model, ModelSpec
from madloop.registry import MODELS

register = MODELS.register

__all__ = ["Algorithm", "Model", "ModelSpec", "MODELS", "register"]
