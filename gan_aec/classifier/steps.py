"""Pure loss, state constructor, train step, eval step and features of the MNIST classifier."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gan_aec import train_state
from gan_aec.train_state import TrainState


def create_train_state(model: nn.Module, *, tx: optax.GradientTransformation, rng: jax.Array,
                       example_images: jax.Array) -> TrainState:
  """The step-0 state of a classifier: `model`'s parameters initialised from `rng`.

  Args:
    model: a Classifier, or any Flax module called as `model(images, train=...)` -> logits [B, K]
      (with train=True it may use a 'dropout' rng).
    tx: the optax optimizer (any transformation, schedules included).
    rng: PRNG key for the parameters.
    example_images: [B, H, W, C] float32 images of the training shape (only the first is used).

  Returns:
    TrainState with params, optimizer state, step 0 and an empty `batch_stats`.
  """
  return train_state.init(model, example_images[:1], tx=tx, rngs=rng)


def random_shift(images: jax.Array, rng: jax.Array, max_shift: int) -> jax.Array:
  """Each image translated by its own random (dy, dx) in [-max_shift, max_shift], zero-filled.

  Args:
    images: [B, H, W, C] float.
    rng: PRNG key.
    max_shift: largest shift in pixels; 0 returns the images unchanged.

  Returns:
    [B, H, W, C], same dtype.
  """
  if not max_shift:
    return images
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * max_shift + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


def cross_entropy(*, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy per example.

  Args:
    logits: [B, K] float, any range.
    labels: [B] int, class indices in [0, K).

  Returns:
    [B] float32, nats (>= 0).
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               max_shift: int = 2) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on the mean cross-entropy, with random translations and dropout.

  Args:
    state: TrainState of a Classifier.
    batch: {'image': [B, H, W, C] float32 in [0, 1], 'label': [B] int32 class indices}.
    rng: PRNG key for the shifts and dropout.
    max_shift: random translation of each image by up to this many pixels (0: none).

  Returns:
    (new state, {'loss': mean cross-entropy, 'accuracy': fraction of the (augmented) batch
    classified correctly, both before the update}).
  """
  shift_rng, dropout_rng = jax.random.split(rng)
  images = random_shift(batch['image'], shift_rng, max_shift)

  def loss_fn(params):
    logits = state.apply_fn({'params': params}, images, train=True,
                            rngs={'dropout': dropout_rng})
    return cross_entropy(logits=logits, labels=batch['label']).mean(), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  accuracy = (logits.argmax(axis=-1) == batch['label']).mean()
  return state.apply_gradients(grads=grads), {'loss': loss, 'accuracy': accuracy}


def eval_step(state: TrainState, batch: dict[str, jax.Array],
              rng: jax.Array) -> dict[str, jax.Array]:
  """Test metrics summed over the batch's valid examples (divide by 'count' for means).

  Args:
    state: TrainState of a Classifier.
    batch: {'image': [B, H, W, C] float32 in [0, 1], 'label': [B] int32, 'mask': optional [B]
      bool, False on padding}.
    rng: unused (the classifier is deterministic at evaluation).

  Returns:
    Sums of 'loss' (cross-entropy, nats) and 'accuracy' (correct predictions), and 'count'.
  """
  del rng
  mask = batch.get('mask', jnp.ones(batch['label'].shape[0], bool)).astype(jnp.float32)
  logits = state.apply_fn({'params': state.params}, batch['image'])
  correct = (logits.argmax(axis=-1) == batch['label']).astype(jnp.float32)
  return {'loss': (cross_entropy(logits=logits, labels=batch['label']) * mask).sum(),
          'accuracy': (correct * mask).sum(), 'count': mask.sum()}


def features(state: TrainState, images: jax.Array) -> jax.Array:
  """The penultimate activations of a Classifier's state (the sample metrics' feature space).

  Args:
    state: TrainState of a Classifier.
    images: [B, H, W, C] float32 in [0, 1].

  Returns:
    [B, feature_dim] float32, >= 0 (after a ReLU).
  """
  return state.apply_fn({'params': state.params}, images, method='features')
