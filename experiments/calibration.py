"""What FID and KID read for known differences between sets of digits: their calibration.

  python -m experiments.calibration
  python -m experiments.calibration --extractor="retrained=runs/mnist_classifier_seed1"

N real test digits (the first half of the test split) are the reference; the candidates are the
other half of the test split, as it is and with increasing damage (Gaussian noise, Gaussian blur),
and N training digits, all of them or without the first k classes. Each is scored in mnist-clf-v1
(the network shipped in the package) and in any other network given as LABEL=SPEC (e.g. a
classifier trained again from the same config with another seed: the numbers of two networks
differ, their order should not). Writes experiments/results/calibration/summary.json and the page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any

import numpy as np

from gan_aec import data as datasets
from gan_aec.data.splits import Split
from gan_aec.run import config as config_lib, sample_quality, startup

from experiments import common, results_page

NOISE_STDS = (0.05, 0.1, 0.2, 0.4)
BLUR_STDS = (0.5, 1.0, 1.5, 2.0)
DROPPED_CLASSES = (1, 2, 3, 5)


def noised(images: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
  """float32 images in [0, 1] plus Gaussian noise of `std`, clipped to [0, 1]."""
  rng = np.random.default_rng(seed)
  return np.clip(images + std * rng.standard_normal(images.shape), 0, 1).astype(np.float32)


def _blur_matrix(size: int, std: float) -> np.ndarray:
  """[size, size] rows of a Gaussian of `std` pixels (zero outside the image), each summing to 1."""
  offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
  weights = np.exp(-0.5 * (offsets / std) ** 2)
  return weights / weights.sum(axis=1, keepdims=True)


def blurred(images: np.ndarray, std: float) -> np.ndarray:
  """float32 images [N, H, W, C] blurred by a Gaussian of `std` pixels along each axis."""
  rows = _blur_matrix(images.shape[1], std)
  cols = _blur_matrix(images.shape[2], std)
  return np.einsum('ih,nhwc,jw->nijc', rows, images, cols).astype(np.float32)


def without_classes(split: Split, dropped: int, num: int, seed: int = 0) -> np.ndarray:
  """`num` float32 images of `split` drawn without replacement from classes dropped..9."""
  rng = np.random.default_rng(seed)
  pool = np.flatnonzero(split.labels >= dropped)
  pick = np.sort(rng.choice(pool, num, replace=False))
  return split.images[pick].astype(np.float32) / 255.0


def candidates(train: Split, test: Split, num: int) -> list[tuple[str, str, np.ndarray]]:
  """(what, strength, images) of every row; the reference is test[:num]."""
  other_half = test.images[num:2 * num].astype(np.float32) / 255.0
  rows = [('test digits (the other half)', '0', other_half)]
  rows += [('test digits (the other half) + Gaussian noise', f'std {s}', noised(other_half, s))
           for s in NOISE_STDS]
  rows += [('test digits (the other half), Gaussian blur', f'{s} px', blurred(other_half, s))
           for s in BLUR_STDS]
  rows.append(('training digits', 'all classes', without_classes(train, 0, num)))
  rows += [('training digits without the first k classes', f'k = {k}',
            without_classes(train, k, num)) for k in DROPPED_CLASSES]
  return rows


def table(extractors: dict[str, sample_quality.FeatureExtractor], train: Split, test: Split,
          num: int) -> list[dict[str, Any]]:
  """One row per candidate: its FID and KID against test[:num] in each network."""
  reference = test.images[:num]
  real = {label: extractor(reference)[0] for label, extractor in extractors.items()}
  rows = []
  for what, strength, images in candidates(train, test, num):
    row = {'what': what, 'strength': strength, 'fid': {}, 'kid': {}}
    for label, extractor in extractors.items():
      scores = sample_quality.compute(real[label], extractor(images)[0])
      row['fid'][label], row['kid'][label] = scores['fid'], scores['kid']
    rows.append(row)
  return rows


def groups(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
  """The rows in order of damage: noise and blur each from the undamaged other half, classes
  dropped from all the training digits."""
  base = [r for r in rows if r['what'] == 'test digits (the other half)']
  return [base + [r for r in rows if 'noise' in r['what']],
          base + [r for r in rows if 'blur' in r['what']],
          [r for r in rows if r['what'].startswith('training digits')]]


def out_of_order(rows: list[dict[str, Any]]) -> list[str]:
  """Where more damage reads as a smaller distance: 'KID, NET: WHAT STRENGTH (x) below ...'."""
  found = []
  for group in groups(rows):
    for metric in ('fid', 'kid'):
      for label in group[0][metric]:
        for weaker, stronger in zip(group, group[1:]):
          if stronger[metric][label] <= weaker[metric][label]:
            found.append(f'{metric.upper()} in {label}: {stronger["what"]}, {stronger["strength"]} '
                         f'({stronger[metric][label]:.4g}) below {weaker["strength"]} '
                         f'({weaker[metric][label]:.4g})')
  return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--extractor', action='append', default=[],
                      help='LABEL=SPEC of another network to score in (repeatable)')
  parser.add_argument('--num', type=int, default=1000, help='N: images per set')
  parser.add_argument('--results_dir', default=os.path.join(common.REPO, 'experiments', 'results'))
  args = parser.parse_args(argv)
  specs = {'mnist-clf-v1': config_lib.SHIPPED_EXTRACTOR}
  specs.update(spec.split('=', 1) for spec in args.extractor)
  extractors = {label: sample_quality.load_extractor(spec) for label, spec in specs.items()}
  data = datasets.load(config_lib.load_config('dcgan').dataset, 28)
  rows = table(extractors, data.train, data.test, args.num)
  exceptions = out_of_order(rows)
  order = ('Each column grows down each group.' if not exceptions else
           'Each column should grow down each group; these do not: ' + '; '.join(exceptions)
           + '.')
  summary = {
      'kind': 'calibration', 'name': 'calibration',
      'title': 'Calibration: FID and KID of known differences',
      'script': 'python -m experiments.calibration'
                + ''.join(f' --extractor="{label}=<{label} network>"' for label in specs
                          if label != 'mnist-clf-v1'),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'code': [startup.code_version()], 'networks': list(specs),
      'network_descriptions': {label: e.description for label, e in extractors.items()},
      'num': args.num, 'data_source': data.source,
      'description': (
          f'N = {args.num:,} candidate images against the first {args.num:,} test digits, in '
          'the features of each network (' + '; '.join(
              f'{label}: {e.description}' for label, e in extractors.items()) + '). The two '
          'halves of the test split are the floor: what two samples of one distribution read '
          'at this N. Noise and blur damage the other half more and more; the training digits '
          'differ from the test half (the test split is the harder end of the MNIST test file) '
          f'and lose the first k digit classes. {order} The trained models\' FIDs are in their '
          'sections (at N = 2,000 against the whole test split, beside the training digits\' '
          'FID at that N).'),
      'out_of_order': exceptions,
      'rows': rows,
  }
  summary['digest'] = common.digest(summary)
  out_dir = os.path.join(args.results_dir, 'calibration')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'summary.json'), 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=1)
  results_page.write(args.results_dir)
  for row in rows:
    print(row['what'], row['strength'], json.dumps(row['fid']))
  return summary


if __name__ == '__main__':
  main(sys.argv[1:])
