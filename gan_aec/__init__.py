"""gan_aec: image autoencoders, VAEs and GANs on MNIST and CelebA in JAX/Flax."""

__version__ = '0.1.0'
