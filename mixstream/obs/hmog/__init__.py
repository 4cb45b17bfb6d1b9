"""The hierarchical mixture of Gaussians: a Gaussian mixture in a latent space under a
linear-Gaussian layer (see ``model.py``)."""

from mixstream.obs.hmog.model import HMoGObs as HMoGObs
