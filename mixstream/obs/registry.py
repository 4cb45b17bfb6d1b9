"""Likelihood names -> observation model classes."""

from mixstream.obs.bernoulli import BernoulliObs
from mixstream.obs.gauss import GaussObs
from mixstream.obs.hmog import HMoGObs
from mixstream.obs.multinomial import MultinomialObs
from mixstream.obs.zero_mean_gauss import ZeroMeanGaussObs

OBSERVATIONS = {
    "gauss": GaussObs,
    "zero_mean_gauss": ZeroMeanGaussObs,
    "bernoulli": BernoulliObs,
    "multinomial": MultinomialObs,
    "hmog": HMoGObs,
}
