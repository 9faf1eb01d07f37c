"""Pure loss, train step and eval step of the (denoising) convolutional autoencoder.

Both steps are module-level functions of explicit arguments: a researcher can `jax.jit`, `jax.vmap`
or shard them without our loop. The model and optimizer come from the state (`state.apply_fn`,
`state.tx`); the denoising corruption is the keyword `noise_std` (0 for the plain autoencoder).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gan_aec import microbatching, train_state
from gan_aec.train_state import TrainState


def create_train_state(model: nn.Module, *, tx: optax.GradientTransformation, rng: jax.Array,
                       example_images: jax.Array) -> TrainState:
  """The step-0 state of an autoencoder: `model`'s parameters initialised from `rng`.

  Args:
    model: a ConvAutoencoder, or any Flax module mapping images [B, H, W, C] to logits of the
      same shape (called as `model.apply({'params': p}, images)`).
    tx: the optax optimizer (any transformation; the steps read it from the state).
    rng: PRNG key for the parameters.
    example_images: [B, H, W, C] float32 images of the training shape (only the first is used).

  Returns:
    TrainState with params, optimizer state, step 0 and an empty `batch_stats`.
  """
  return train_state.init(model, example_images[:1], tx=tx, rngs=rng)


def reconstruction_loss(*, logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Sigmoid cross-entropy per image, averaged over pixels (the original report's figure).

  Args:
    logits: [B, H, W, C] float, any range.
    targets: [B, H, W, C] float in [0, 1] (grey levels, not only binary).

  Returns:
    [B] float32: each image's mean cross-entropy per pixel, in nats.
  """
  per_pixel = optax.sigmoid_binary_cross_entropy(logits, targets)
  return per_pixel.reshape(per_pixel.shape[0], -1).mean(axis=1)


def psnr(*, images: jax.Array, targets: jax.Array) -> jax.Array:
  """Peak signal-to-noise ratio in dB per image, for pixel values in [0, 1] (peak 1).

  Args:
    images, targets: [B, H, W, C] float in [0, 1].

  Returns:
    [B] float32: 10 * log10(1 / mean squared error) of each image.
  """
  mse = jnp.square(images - targets).reshape(images.shape[0], -1).mean(axis=1)
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


def add_noise(images: jax.Array, rng: jax.Array, noise_std: float) -> jax.Array:
  """The original report's corruption: clip(x + noise_std * N(0, 1), 0, 1).

  Args:
    images: [B, H, W, C] float in [0, 1].
    rng: PRNG key for the Gaussian noise.
    noise_std: standard deviation of the noise (the denoising autoencoder: 0.5).

  Returns:
    [B, H, W, C], same dtype, in [0, 1].
  """
  noise = jax.random.normal(rng, images.shape, images.dtype)
  return jnp.clip(images + noise_std * noise, 0.0, 1.0)


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               noise_std: float = 0.0,
               microbatch_size: int | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on the mean reconstruction cross-entropy.

  Args:
    state: TrainState of a ConvAutoencoder.
    batch: {'image': [B, H, W, C] float32 in [0, 1]}; other keys are ignored.
    rng: PRNG key for the input noise (unused when noise_std is 0).
    noise_std: std of the Gaussian corruption of the input (denoising autoencoder: 0.5). The target
      is always the clean image.
    microbatch_size: compute the gradient in passes over this many images (see
      gan_aec.microbatching; the same gradient, faster on CPU). None: the whole batch at once.

  Returns:
    (new state, {'loss': scalar mean cross-entropy per pixel of the batch before the update}).
  """
  targets = batch['image']
  inputs = add_noise(targets, rng, noise_std) if noise_std else targets

  def loss_sum_fn(params, examples):
    logits = state.apply_fn({'params': params}, examples['input'])
    return reconstruction_loss(logits=logits, targets=examples['target']).sum(), ()

  (loss_sum, _), grads = microbatching.sum_value_and_grad(
      loss_sum_fn, state.params, {'input': inputs, 'target': targets}, microbatch_size)
  size = targets.shape[0]
  grads = jax.tree.map(lambda g: g / size, grads)
  return state.apply_gradients(grads=grads), {'loss': loss_sum / size}


def eval_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
              noise_std: float = 0.0) -> dict[str, jax.Array]:
  """Test metrics summed over the batch's valid images (divide by 'count' for means).

  Args:
    state: TrainState of a ConvAutoencoder.
    batch: {'image': [B, H, W, C] float32 in [0, 1], 'mask': optional [B] bool, False on padding}.
    rng: PRNG key for the input noise (fix it for comparable evaluations).
    noise_std: as in train_step.

  Returns:
    Sums over valid images of 'loss' (cross-entropy per pixel) and 'psnr' (dB of the
    reconstruction against the clean image), 'input_psnr' when noise_std > 0 (the noisy input's
    PSNR, the baseline a denoiser must beat), and 'count'.
  """
  targets = batch['image']
  mask = batch.get('mask', jnp.ones(targets.shape[0], bool)).astype(jnp.float32)
  inputs = add_noise(targets, rng, noise_std) if noise_std else targets
  logits = state.apply_fn({'params': state.params}, inputs)
  sums = {
      'loss': (reconstruction_loss(logits=logits, targets=targets) * mask).sum(),
      'psnr': (psnr(images=jax.nn.sigmoid(logits), targets=targets) * mask).sum(),
      'count': mask.sum(),
  }
  if noise_std:
    sums['input_psnr'] = (psnr(images=inputs, targets=targets) * mask).sum()
  return sums


def encode(state: TrainState, images: jax.Array) -> jax.Array:
  """The code of each image: [B, H, W, C] in [0, 1] -> [B, h, w, encoder_features[-1]] float32.

  For a ConvAutoencoder's state (28x28 inputs give 4x4 codes).
  """
  code, _ = state.apply_fn({'params': state.params}, images, method='encode')
  return code


def reconstruct(state: TrainState, images: jax.Array) -> jax.Array:
  """Reconstructions (sigmoid of the logits): [B, H, W, C] in [0, 1] -> [B, H, W, C] in [0, 1]."""
  return jax.nn.sigmoid(state.apply_fn({'params': state.params}, images))
