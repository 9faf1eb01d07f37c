"""The seed's DCGAN: generator, discriminator, GAN losses and a pure two-network train step."""

from gan_aec.dcgan.losses import LOSSES, hinge, least_squares, non_saturating
from gan_aec.dcgan.model import Discriminator, Generator
from gan_aec.dcgan.steps import GANState, eval_step, generate, sample_latents, train_step

__all__ = ['Discriminator', 'GANState', 'Generator', 'LOSSES', 'eval_step', 'generate', 'hinge',
           'least_squares', 'non_saturating', 'sample_latents', 'train_step']
