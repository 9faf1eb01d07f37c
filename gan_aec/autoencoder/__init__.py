"""The seed's convolutional autoencoder (16-8-8) and denoising autoencoder (32-32-16)."""

from gan_aec.autoencoder.model import ConvAutoencoder
from gan_aec.autoencoder.steps import (add_noise, eval_step, psnr, reconstruction_loss,
                                       train_step)

__all__ = ['ConvAutoencoder', 'add_noise', 'eval_step', 'psnr', 'reconstruction_loss',
           'train_step']
