"""The DCGAN's state, its constructor, its pure train and eval steps and its sampler.

    train_step(state, batch, rng) -> (state, metrics)

holds both networks, both optax optimizer states and both sets of BatchNorm statistics in one
pytree (`GANState`). One generator forward pass serves both updates: the two losses are computed
from one forward graph, and `jax.vjp` with cotangents (1, 0) and (0, 1) gives the discriminator's
gradient of its loss and the generator's gradient of its own (simultaneous updates).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_aec import train_state
from gan_aec.dcgan import losses
from gan_aec.train_state import TrainState


class GANState(flax.struct.PyTreeNode):
  """generator and discriminator: TrainStates with their own params, optimizer and batch_stats.

  ema_params: an exponential moving average of the generator's params ({} when EMA is off).
  """
  generator: TrainState
  discriminator: TrainState
  ema_params: Any = flax.struct.field(default_factory=dict)

  @property
  def step(self) -> jax.Array:
    """The number of updates so far (the generator's and the discriminator's are equal)."""
    return self.generator.step


def create_gan_state(generator: nn.Module, discriminator: nn.Module, *,
                     tx: optax.GradientTransformation, rng: jax.Array, example_images: jax.Array,
                     latent_dim: int = 100, d_tx: optax.GradientTransformation | None = None,
                     use_ema: bool = False) -> GANState:
  """The step-0 GANState: both networks initialised from `rng`, each with its optimizer.

  Args:
    generator: a Generator, or any Flax module called as `generator(z, train=...)` with z
      [B, latent_dim] -> images [B, H, W, C] (a 'batch_stats' collection, i.e. BatchNorm, needed).
    discriminator: a Discriminator, or any module called as `discriminator(images, train=...)` ->
      logits [B] (with BatchNorm).
    tx: the generator's optax optimizer, and the discriminator's unless d_tx is given (the report:
      optax.adam(2e-4, b1=0.5)).
    rng: PRNG key; split into the generator's and the discriminator's initialisation keys.
    example_images: [B, H, W, C] float32 images of the training shape (only the first is used).
    latent_dim: size of z.
    d_tx: the discriminator's optimizer, when it differs from the generator's.
    use_ema: keep an exponential moving average of the generator's params (starting at its
      initial params); train_step updates it when given ema_decay.

  Returns:
    GANState at step 0.
  """
  g_rng, d_rng = jax.random.split(rng)
  g_vars = generator.init({'params': g_rng}, np.zeros((1, latent_dim), np.float32), train=False)
  d_vars = discriminator.init({'params': d_rng}, example_images[:1], train=False)
  return GANState(
      generator=train_state.create(model=generator, params=g_vars['params'], tx=tx,
                                   batch_stats=g_vars['batch_stats']),
      discriminator=train_state.create(model=discriminator, params=d_vars['params'],
                                       tx=tx if d_tx is None else d_tx,
                                       batch_stats=d_vars['batch_stats']),
      # A copy, not the same buffers: a jitted step may donate both.
      ema_params=jax.tree.map(jnp.copy, g_vars['params']) if use_ema else {})


def sample_latents(rng: jax.Array, batch_size: int, latent_dim: int) -> jax.Array:
  """z ~ Uniform[-1, 1]^latent_dim drawn with `rng` (the original report's prior).

  Returns [batch_size, latent_dim] float32; `batch_size` and `latent_dim` must be static under jit.
  """
  return jax.random.uniform(rng, (batch_size, latent_dim), jnp.float32, -1.0, 1.0)


def generate(state: GANState, z: jax.Array, *, use_ema: bool = False) -> jax.Array:
  """Images from latents, in inference mode (no dropout, BatchNorm running statistics).

  Args:
    state: GANState.
    z: [B, latent_dim] float32, e.g. from sample_latents.
    use_ema: use the generator's EMA parameters (when the state keeps them).

  Returns:
    [B, S, S, C] float32 in [-1, 1] (map to [0, 1] with (x + 1) / 2 for display).
  """
  params = state.ema_params if (use_ema and state.ema_params) else state.generator.params
  return state.generator.apply_fn(
      {'params': params, 'batch_stats': state.generator.batch_stats}, z, train=False)


def train_step(state: GANState, batch: dict[str, jax.Array], rng: jax.Array, *,
               latent_dim: int = 100, loss: str = 'non_saturating', real_label: float = 0.9,
               ema_decay: float | None = None) -> tuple[GANState, dict[str, jax.Array]]:
  """One simultaneous update of the discriminator and the generator.

  Args:
    state: GANState (from create_gan_state, with any optax optimizers).
    batch: {'image': [B, S, S, C] float32 in [-1, 1]}, any B; other keys are ignored.
    rng: PRNG key for z, and for the generator's and discriminator's dropout.
    latent_dim: size of z (the original report: 100).
    loss: a name in gan_aec.dcgan.losses.LOSSES ('non_saturating', 'hinge', 'least_squares').
    real_label: the discriminator's target for real images (the original report smooths it to 0.9).
    ema_decay: when set, state.ema_params <- decay * ema + (1 - decay) * new generator params.

  Returns:
    (new state, metrics): 'd_loss', 'g_loss', 'd_real' (mean sigmoid(D(x))) and 'd_fake'
    (mean sigmoid(D(G(z)))), all before the update.
  """
  z_rng, g_dropout, d_dropout_real, d_dropout_fake = jax.random.split(rng, 4)
  images = batch['image']
  z = sample_latents(z_rng, images.shape[0], latent_dim)
  loss_fn = losses.LOSSES[loss]
  g, d = state.generator, state.discriminator

  def both_losses(d_params, g_params):
    fake, g_updates = g.apply_fn({'params': g_params, 'batch_stats': g.batch_stats}, z, train=True,
                                 rngs={'dropout': g_dropout}, mutable=['batch_stats'])
    real_logits, d_updates = d.apply_fn(
        {'params': d_params, 'batch_stats': d.batch_stats}, images, train=True,
        rngs={'dropout': d_dropout_real}, mutable=['batch_stats'])
    fake_logits, d_updates = d.apply_fn(
        {'params': d_params, 'batch_stats': d_updates['batch_stats']}, fake, train=True,
        rngs={'dropout': d_dropout_fake}, mutable=['batch_stats'])
    d_loss, g_loss = loss_fn(real_logits=real_logits, fake_logits=fake_logits,
                             real_label=real_label)
    aux = {'g_batch_stats': g_updates['batch_stats'], 'd_batch_stats': d_updates['batch_stats'],
           'd_real': jax.nn.sigmoid(real_logits).mean(),
           'd_fake': jax.nn.sigmoid(fake_logits).mean()}
    return (d_loss, g_loss), aux

  (d_loss, g_loss), vjp_fn, aux = jax.vjp(both_losses, d.params, g.params, has_aux=True)
  one, zero = jnp.ones_like(d_loss), jnp.zeros_like(d_loss)
  d_grads, _ = vjp_fn((one, zero))
  _, g_grads = vjp_fn((zero, one))

  new_g = g.apply_gradients(grads=g_grads, batch_stats=aux['g_batch_stats'])
  new_d = d.apply_gradients(grads=d_grads, batch_stats=aux['d_batch_stats'])
  ema = state.ema_params
  if ema_decay is not None:
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, new_g.params)
  metrics = {'d_loss': d_loss, 'g_loss': g_loss, 'd_real': aux['d_real'], 'd_fake': aux['d_fake']}
  return state.replace(generator=new_g, discriminator=new_d, ema_params=ema), metrics


def eval_step(state: GANState, batch: dict[str, jax.Array], rng: jax.Array) -> dict[str, jax.Array]:
  """The discriminator on test images (inference mode), summed over valid images.

  Args:
    state: GANState.
    batch: {'image': [B, S, S, C] float32 in [-1, 1], 'mask': optional [B] bool}.
    rng: unused (kept for the common eval_step signature).

  Returns:
    {'d_real': sum of sigmoid(D(x)), 'count'}: the loop reports eval_d_real, the mean probability
    the discriminator gives held-out real images (sample quality metrics come with FID).
  """
  del rng
  mask = batch.get('mask', jnp.ones(batch['image'].shape[0], bool)).astype(jnp.float32)
  d = state.discriminator
  logits = d.apply_fn({'params': d.params, 'batch_stats': d.batch_stats}, batch['image'],
                      train=False)
  return {'d_real': (jax.nn.sigmoid(logits) * mask).sum(), 'count': mask.sum()}
