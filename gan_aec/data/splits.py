"""A dataset's train and test splits held on the host as uint8 image arrays (in memory or
mapped)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: uint8 images [N, H, W, C] (an array or a read-only np.memmap) and optional labels.

  labels: int64 [N] class labels (MNIST digits), or None where the dataset has no classes (CelebA).
  """
  images: np.ndarray
  labels: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.images)


@dataclasses.dataclass(frozen=True)
class Data:
  """The splits a run trains and evaluates on, and where they came from (recorded in the run)."""
  train: Split
  test: Split
  source: str
