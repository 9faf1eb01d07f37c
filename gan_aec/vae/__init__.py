"""The seed's convolutional VAE with a correct ELBO and an importance-weighted likelihood bound."""

from gan_aec.vae.losses import (bernoulli_nll, gaussian_kl, iwae_log_weights, iwae_nll,
                                negative_elbo)
from gan_aec.vae.model import ConvVAE, reparameterize
from gan_aec.vae.steps import binarize, eval_step, importance_weighted_nll, train_step

__all__ = ['ConvVAE', 'bernoulli_nll', 'binarize', 'eval_step', 'gaussian_kl',
           'importance_weighted_nll', 'iwae_log_weights', 'iwae_nll', 'negative_elbo',
           'reparameterize', 'train_step']
