"""mnist-clf-v1: the MNIST feature network that ships inside the package.

FID, KID, precision/recall and coverage of MNIST digits are distances in a classifier's feature
space; they compare between two runs only when both use the same network. This one is trained
once (`python -m experiments.mnist_classifier --ship`: configs/mnist_classifier.py, its default
recipe, on the bundled training digits) and its weights are part of the package, so every
installation scores digits in the same features:

    model, params = shipped.load()
    features, logits = model.apply({'params': params}, images, method='features_and_logits')

images: float32 [B, 28, 28, 1] in [0, 1]; features [B, 128] (the penultimate layer), logits
[B, 10]. The network is named by NAME and the hash of its weights (`digest`), and every record of
a number measured in it carries both (`describe`). A network trained again, even by the same
command, is another network: it gets another hash, and its numbers are not the same numbers.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
from typing import Any

import flax.traverse_util
import jax
import numpy as np

from gan_aec.classifier.model import Classifier
from gan_aec.errors import ExtractorError

NAME = 'mnist-clf-v1'
# Two blocks of two 3x3 convolutions, each then a 2x2 max pool, and a third pool alone
# (28 -> 14 -> 7 -> 4): 4 * 4 * 64 = 1,024 inputs to the 128 features; 197,482 parameters.
CONV_FEATURES = ((32, 32), (64, 64), ())
FEATURE_DIM = 128
WEIGHTS_FILE = 'mnist_clf_v1.npz'
DIGEST = 'd8012c55699d52c8'  # `digest` of the weights shipped as mnist-clf-v1.


def model() -> Classifier:
  """The mnist-clf-v1 architecture (parameters from `load`)."""
  return Classifier(num_classes=10, conv_features=CONV_FEATURES, feature_dim=FEATURE_DIM,
                    dropout_rate=0.5)


def digest(params: Any) -> str:
  """A hash of a parameter pytree's names, shapes, dtypes and values (16 hex digits): which
  network it is, wherever it lies."""
  hasher = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    array = np.asarray(leaf)
    hasher.update(f'{jax.tree_util.keystr(path)}{array.shape}{array.dtype}'.encode())
    hasher.update(np.ascontiguousarray(array).tobytes())
  return hasher.hexdigest()[:16]


def describe(params: Any) -> str:
  """'mnist-clf-v1 sha256:<digest>': what a record of a sample metric names."""
  return f'{NAME} sha256:{digest(params)}'


def to_bytes(params: Any) -> bytes:
  """The parameters as an .npz file's bytes ('block0_conv0/kernel', ... float32)."""
  flat = flax.traverse_util.flatten_dict(jax.device_get(params), sep='/')
  buffer = io.BytesIO()
  np.savez(buffer, **{k: np.asarray(v, np.float32) for k, v in sorted(flat.items())})
  return buffer.getvalue()


def from_bytes(data: bytes) -> dict[str, Any]:
  """The parameter pytree of an .npz file written by `to_bytes`."""
  with np.load(io.BytesIO(data)) as arrays:
    return flax.traverse_util.unflatten_dict({k: arrays[k] for k in arrays.files}, sep='/')


def check(params: Any) -> None:
  """ExtractorError unless `params` are mnist-clf-v1's (their digest is DIGEST)."""
  found = digest(params)
  if found != DIGEST:
    raise ExtractorError(f'The weights in gan_aec/classifier/{WEIGHTS_FILE} hash to {found}: '
                         f'they are not {NAME} (sha256:{DIGEST}). Reinstall gan_aec.')


def load() -> tuple[Classifier, dict[str, Any]]:
  """(model, params) of the shipped mnist-clf-v1 (checked against DIGEST)."""
  data = importlib.resources.files('gan_aec.classifier').joinpath(WEIGHTS_FILE).read_bytes()
  params = from_bytes(data)
  check(params)
  return model(), params
