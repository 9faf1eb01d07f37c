"""The report's convolutional VAE with a correct ELBO and an importance-weighted likelihood bound.

Public API: the model, the reparameterisation, the pure losses (ELBO parts, IWAE bound), the state
constructor, the pure train and eval steps, and encoding / decoding / sampling. The losses need
only an encoder's (mean, logvar) and a decoder's logits, so they fit any encoder and decoder.
"""

from gan_aec.vae.losses import (bernoulli_nll, gaussian_kl, iwae_log_weights, iwae_nll,
                                negative_elbo)
from gan_aec.vae.model import ConvVAE, reparameterize
from gan_aec.vae.steps import (binarize, create_train_state, decode, encode, eval_step,
                               importance_weighted_nll, sample, train_step)

__all__ = ['ConvVAE', 'bernoulli_nll', 'binarize', 'create_train_state', 'decode', 'encode',
           'eval_step', 'gaussian_kl', 'importance_weighted_nll', 'iwae_log_weights', 'iwae_nll',
           'negative_elbo', 'reparameterize', 'sample', 'train_step']
