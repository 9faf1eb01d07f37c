"""Sample-quality metrics against closed forms and brute-force reference implementations."""

import itertools

import numpy as np
import pytest

from gan_aec import sample_metrics


def test_fid_of_two_gaussians_matches_the_closed_form():
  # Diagonal covariances: Tr((S1 S2)^(1/2)) = sum sqrt(s1 * s2), so the distance is explicit.
  mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
  s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
  got = sample_metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  # A full (rotated) covariance gives the same number: the distance is rotation invariant.
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  rotated = sample_metrics.frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2,
                                            q @ np.diag(s2) @ q.T)
  np.testing.assert_allclose(rotated, expected, rtol=1e-9)


def test_fid_on_samples_and_on_singular_covariances():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(4000, 4))
  b = rng.normal(size=(4000, 4)) * 2 + 1
  # Sample estimate near the population value 4 * 1 + 4 * (1 + 4 - 2 * 2) = 8.
  assert abs(sample_metrics.fid(a, b) - 8.0) < 0.5
  assert abs(sample_metrics.fid(a, a)) < 1e-9
  # Fewer points than dimensions: singular covariances, still a finite non-negative number.
  few = sample_metrics.fid(rng.normal(size=(5, 20)), rng.normal(size=(5, 20)))
  assert np.isfinite(few) and few >= -1e-9


def _mmd2_brute_force(x, y):
  k = lambda a, b: (a @ b / len(a) + 1.0) ** 3  # pylint: disable=unnecessary-lambda-assignment
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_of_a_brute_force_double_loop():
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.5
  np.testing.assert_allclose(sample_metrics.mmd2_unbiased(x, y), _mmd2_brute_force(x, y),
                             rtol=1e-10)
  # Each subset holds 3 points of each set (half the smaller one, 7 // 2): the mean of the subsets'
  # unbiased estimates, and a spread that is not 0 (subsets as large as the sets would all be the
  # same).
  rng_subsets = np.random.default_rng(0)
  expected = [_mmd2_brute_force(x[rng_subsets.choice(7, 3, replace=False)],
                                y[rng_subsets.choice(9, 3, replace=False)]) for _ in range(3)]
  mean, std = sample_metrics.kid(x, y, num_subsets=3, subset_size=100)
  np.testing.assert_allclose([mean, std], [np.mean(expected), np.std(expected)], rtol=1e-10)
  assert std > 0
  # Same distribution: unbiased, so centred on 0 within its spread (it can be negative), and far
  # below the value for a shifted distribution.
  same = rng.normal(size=(400, 3))
  mean, std = sample_metrics.kid(same[:200], same[200:], num_subsets=20, subset_size=100)
  shifted, _ = sample_metrics.kid(same[:200], same[200:] + 1, num_subsets=20, subset_size=100)
  assert abs(mean) < 2 * std and shifted > 50 * abs(mean)


def _in_manifold_brute_force(points, centers, k):
  inside = []
  for p in points:
    hit = False
    for i, c in enumerate(centers):
      others = sorted(np.sum((c - o) ** 2) for j, o in enumerate(centers) if j != i)
      hit |= np.sum((p - c) ** 2) <= others[k - 1]
    inside.append(hit)
  return np.mean(inside)


def test_precision_and_recall_match_the_definition():
  rng = np.random.default_rng(3)
  real, fake = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) * 0.8 + 1.2
  precision, recall = sample_metrics.precision_recall(real, fake, k=3)
  assert precision == pytest.approx(_in_manifold_brute_force(fake, real, 3))
  assert recall == pytest.approx(_in_manifold_brute_force(real, fake, 3))
  assert 0 < precision < 1 and 0 < recall < 1
  assert sample_metrics.precision_recall(real, real, k=3) == (1.0, 1.0)


def test_density_and_coverage_match_the_definition():
  rng = np.random.default_rng(4)
  real, fake, k = rng.normal(size=(30, 2)), rng.normal(size=(20, 2)) + 0.5, 4
  radii = [sorted(np.sum((c - o) ** 2) for j, o in enumerate(real) if j != i)[k - 1]
           for i, c in enumerate(real)]
  inside = np.array([[np.sum((y - c) ** 2) <= r for c, r in zip(real, radii)] for y in fake])
  density, coverage = sample_metrics.density_coverage(real, fake, k=k)
  assert density == pytest.approx(inside.sum() / (k * len(fake)))
  assert coverage == pytest.approx(inside.any(axis=0).mean())


def test_class_statistics_of_confident_and_collapsed_samples():
  confident = np.eye(10)[np.arange(100) % 10] * 50.0  # Every class, with certainty.
  stats = sample_metrics.class_statistics(confident)
  assert stats['class_histogram'] == [10] * 10 and stats['classes_covered'] == 10
  assert stats['mean_confidence'] == pytest.approx(1.0)
  assert stats['classifier_score'] == pytest.approx(10.0, rel=1e-6)  # The maximum, C.
  collapsed = np.tile(np.eye(10)[3] * 50.0, (100, 1))  # Mode collapse onto one class.
  stats = sample_metrics.class_statistics(collapsed)
  assert stats['classes_covered'] == 1 and stats['classifier_score'] == pytest.approx(1.0)
