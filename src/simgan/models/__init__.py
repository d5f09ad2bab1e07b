"""The networks and losses of SimGAN (§2): the refiner R (§2.1), the local discriminator D
(§2.2), the losses of Eq. 2-4, and the feature transform ψ of the self-regularisation term."""

from .discriminator import build_discriminator, patch_geometry
from .features import frozen_feature_net
from .refiner import Refiner

__all__ = ["Refiner", "build_discriminator", "frozen_feature_net", "patch_geometry"]
