"""The original report's convolutional autoencoder (16-8-8) and denoising autoencoder (32-32-16).

Public API: the model, its pure loss and metric, the state constructor, the pure train and eval
steps, and encoding / reconstruction. The steps take the model and the optimizer from the state.
"""

from gan_aec.autoencoder.model import ConvAutoencoder
from gan_aec.autoencoder.steps import (add_noise, create_train_state, encode, eval_step, psnr,
                                       reconstruct, reconstruction_loss, train_step)

__all__ = ['ConvAutoencoder', 'add_noise', 'create_train_state', 'encode', 'eval_step', 'psnr',
           'reconstruct', 'reconstruction_loss', 'train_step']
