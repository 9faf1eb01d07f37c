"""The MNIST classifier's Task: its state, steps and confusion-matrix figures from a config."""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np
import optax

from gan_aec import data, figures
from gan_aec.classifier import Classifier, create_train_state, eval_step, train_step
from gan_aec.data.batching import map_in_batches, to_float
from gan_aec.data.splits import Split
from gan_aec.run.tasks.base import Drawing, Task, optimizer
from gan_aec.run.workdir import ReplicaFiles

NUM_CLASSES = 10
MAX_SHOWN_ERRORS = 40


def build_model(config: ml_collections.ConfigDict) -> Classifier:
  return Classifier(num_classes=NUM_CLASSES,
                    conv_features=tuple(tuple(b) for b in config.conv_features),
                    feature_dim=config.feature_dim, dropout_rate=config.dropout_rate,
                    conv_implementation=config.conv_implementation)


# Jitted once for the process: every evaluation's figures reuse the compiled function.
_logits = jax.jit(lambda state, images: state.apply_fn({'params': state.params}, images))


def predict(state, images_uint8: np.ndarray) -> np.ndarray:
  """Predicted classes [N] of uint8 images by a classifier's TrainState."""
  return map_in_batches(lambda x: _logits(state, to_float(x)), images_uint8,
                        batch_size=1000).argmax(axis=-1)


def write_classifier_figures(state, test: Split, figures_dir: str, step: int) -> list[str]:
  """The confusion matrix on the test split and a grid of the misclassified test digits."""
  predicted = predict(state, test.images)
  confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
  np.add.at(confusion, (test.labels, predicted), 1)
  accuracy = float(np.trace(confusion)) / len(test)
  paths = [figures.save_confusion_matrix(
      os.path.join(figures_dir, 'confusion_matrix.png'), confusion,
      f'Classifier, step {step}: test accuracy {100 * accuracy:.2f}% of {len(test)}')]
  wrong = np.flatnonzero(predicted != test.labels)[:MAX_SHOWN_ERRORS]
  if len(wrong):
    pairs = ' '.join(f'{test.labels[i]}>{predicted[i]}' for i in wrong[:10])
    paths.append(figures.save_image_grid(
        os.path.join(figures_dir, 'misclassified.png'), to_float(test.images[wrong]), 10,
        f'Misclassified test digits (true>predicted: {pairs}{" ..." if len(wrong) > 10 else ""})'))
  return paths


def build_task(config: ml_collections.ConfigDict) -> Task:
  if not data.get(config.dataset.name).has_labels:
    raise ValueError(f'The classifier trains on labelled MNIST digits; dataset.name='
                     f'{config.dataset.name!r} has no class labels here.')
  model = build_model(config)

  def adam_with_schedule(learning_rate):  # The peak of a linear warm-up and a cosine decay.
    return optax.adam(optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps=config.warmup_steps, decay_steps=config.num_train_steps))

  def create_state(rng, example_batch):
    return create_train_state(model, tx=optimizer(config, adam_with_schedule), rng=rng,
                              example_images=example_batch['image'])

  def write_figures(state, test: Split, files: ReplicaFiles, step: int, final: bool, *,
                    seed: int) -> list[str]:
    figures_dir = files.figures
    del final, seed
    return write_classifier_figures(state, test, figures_dir, step)

  return Task(create_state=create_state,
              train_step=functools.partial(train_step, max_shift=config.max_shift),
              eval_step=eval_step, drawing=Drawing(write_figures))
