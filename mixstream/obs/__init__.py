from mixstream.obs.bernoulli import BernoulliObs as BernoulliObs
from mixstream.obs.gauss import GaussObs as GaussObs
from mixstream.obs.multinomial import MultinomialObs as MultinomialObs
from mixstream.obs.zero_mean_gauss import ZeroMeanGaussObs as ZeroMeanGaussObs
