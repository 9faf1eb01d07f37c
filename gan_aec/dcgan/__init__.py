"""The report's DCGAN: generator, discriminator, GAN losses and a pure two-network train step.

Public API: the two Flax modules, the pure GAN losses (and LOSSES, their table by name), the
two-network state and its constructor, the pure train and eval steps, and sampling (latents, then
images). The optimizers travel in the state, so any optax transformation works.
"""

from gan_aec.dcgan.losses import LOSSES, hinge, least_squares, non_saturating
from gan_aec.dcgan.model import Discriminator, Generator
from gan_aec.dcgan.steps import (GANState, create_gan_state, eval_step, generate, sample_latents,
                                 train_step)

__all__ = ['Discriminator', 'GANState', 'Generator', 'LOSSES', 'create_gan_state', 'eval_step',
           'generate', 'hinge', 'least_squares', 'non_saturating', 'sample_latents', 'train_step']
