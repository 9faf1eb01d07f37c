"""Sample-quality metrics: pure functions of feature arrays (and of a classifier's logits).

All take `real` [N, D] and `fake` [M, D] features (e.g. the penultimate layer of an MNIST
classifier) as numpy arrays and return Python floats; they compute in float64 on the host.
  fid                     Fréchet distance between Gaussians fitted to the two sets (Heusel et al.)
  kid                     kernel inception distance: unbiased MMD^2, cubic polynomial kernel, mean
                          and standard deviation over random subsets (Binkowski et al. 2018)
  precision_recall        k-NN manifold precision and recall (Kynkäänniemi et al. 2019)
  density_coverage        density and coverage (Naeem et al. 2020)
  class_statistics        from logits: class histogram, classes covered, mean confidence and the
                          Inception-score analogue exp(E_x KL(p(y|x) || p(y)))
Distances are computed in row blocks, so memory stays O(block * N) for 10,000 x 10,000 sets.
"""

from __future__ import annotations

import numpy as np

__all__ = ['class_statistics', 'density_coverage', 'fid', 'frechet_distance', 'kid', 'knn_radii',
           'mmd2_unbiased', 'precision_recall']

_BLOCK = 1024


def _moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(features, np.float64)
  return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
  """||mu1 - mu2||^2 + Tr(cov1) + Tr(cov2) - 2 Tr((cov1 cov2)^(1/2)).

  Tr((cov1 cov2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
  PSD matrix cov1^(1/2) cov2 cov1^(1/2) (same spectrum), with tiny negative eigenvalues from
  rounding clipped to 0: no complex parts to discard and no failure on singular covariances,
  unlike a general matrix square root of the non-symmetric product.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
  eigvals, eigvecs = np.linalg.eigh(cov1)
  sqrt1 = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T
  middle = sqrt1 @ cov2 @ sqrt1
  trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to real and fake."""
  return frechet_distance(*_moments(real), *_moments(fake))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 between samples x [m, D] and y [n, D] with the cubic polynomial kernel."""
  m, n = len(x), len(y)
  kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kid(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """(mean, standard deviation) of the unbiased MMD^2 over `num_subsets` random subsets of
  min(subset_size, N // 2, M // 2) points drawn without replacement from each set.

  At most half of each set, so that the subsets differ and their spread measures something (with
  subsets as large as the sets every subset is the whole set, and the spread is 0); from 2,000
  points per set on this is torch-fidelity's default of 1,000.
  """
  x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  size = min(subset_size, len(x) // 2, len(y) // 2)
  if size < 2:
    raise ValueError('KID needs at least 4 real and 4 fake feature vectors.')
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                          y[rng.choice(len(y), size, replace=False)]) for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
  return np.maximum(d, 0.0)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
  """Squared distance from each point to its k-th nearest other point of the same set [N]."""
  x = np.asarray(features, np.float64)
  if len(x) <= k:
    raise ValueError(f'k-NN radii need more than k={k} points, got {len(x)}.')
  radii = np.empty(len(x))
  for start in range(0, len(x), _BLOCK):
    d = _squared_distances(x[start:start + _BLOCK], x)
    # Column k of the sorted row: column 0 is the point itself (distance 0).
    radii[start:start + _BLOCK] = np.partition(d, k, axis=1)[:, k]
  return radii


def _inside_counts(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
  """For each point: how many of the balls (centers, squared radii) contain it [len(points)]."""
  counts = np.zeros(len(points), np.int64)
  for start in range(0, len(points), _BLOCK):
    d = _squared_distances(points[start:start + _BLOCK], centers)
    counts[start:start + _BLOCK] = (d <= radii[None, :]).sum(axis=1)
  return counts


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3) -> tuple[float, float]:
  """Precision: the fraction of fakes inside the real manifold (the union of balls around each real
  point reaching its k-th nearest real neighbour). Recall: the fraction of reals inside the fake
  manifold, built the same way."""
  x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  precision = (_inside_counts(y, x, knn_radii(x, k)) > 0).mean()
  recall = (_inside_counts(x, y, knn_radii(y, k)) > 0).mean()
  return float(precision), float(recall)


def density_coverage(real: np.ndarray, fake: np.ndarray, *, k: int = 5) -> tuple[float, float]:
  """Density: real k-NN balls containing each fake, summed, / (k * M) (1 for matching sets, can
  exceed 1). Coverage: the fraction of real points whose k-NN ball contains at least one fake."""
  x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  radii = knn_radii(x, k)
  density = _inside_counts(y, x, radii).sum() / (k * len(y))
  covered = np.zeros(len(x), bool)
  for start in range(0, len(x), _BLOCK):
    d = _squared_distances(x[start:start + _BLOCK], y)
    covered[start:start + _BLOCK] = (d.min(axis=1) <= radii[start:start + _BLOCK])
  return float(density), float(covered.mean())


def class_statistics(logits: np.ndarray, *, min_share: float = 0.1) -> dict[str, object]:
  """From a classifier's logits [M, C] on generated images.

  Returns 'class_histogram' (counts of argmax classes, length C), 'classes_covered' (classes that
  receive at least min_share of a uniform share, i.e. >= min_share * M / C samples),
  'mean_confidence' (mean max softmax probability) and 'classifier_score' (the Inception-score
  formula exp(E_x KL(p(y|x) || p(y))), between 1 and C).
  """
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  p = np.exp(z)
  p /= p.sum(axis=1, keepdims=True)
  num, num_classes = p.shape
  histogram = np.bincount(p.argmax(axis=1), minlength=num_classes)
  marginal = p.mean(axis=0)
  kl = (p * (np.log(np.clip(p, 1e-30, None)) - np.log(np.clip(marginal, 1e-30, None)))).sum(1)
  return {'class_histogram': histogram.tolist(),
          'classes_covered': int((histogram >= min_share * num / num_classes).sum()),
          'mean_confidence': float(p.max(axis=1).mean()),
          'classifier_score': float(np.exp(kl.mean()))}
