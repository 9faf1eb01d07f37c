"""Writes `experiments/results/README.md` from the experiments' `summary.json` files.

  python experiments/results_page.py [--results_dir=experiments/results]

Every number and figure on the page comes from a summary an experiment script wrote; the only
hand-written text is in the scripts (titles, the report's numbers, expected full-mode times).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

ORDER = ('autoencoder_mnist', 'denoising_autoencoder_mnist', 'vae_mnist', 'mnist_classifier',
         'dcgan_mnist', 'dcgan_celeb_a', 'dcgan_celeb_a64')
SAMPLE_METRIC_NAMES = ('fid', 'kid', 'kid_subsets_std', 'precision', 'recall', 'density', 'coverage',
                       'classes_covered', 'mean_confidence', 'classifier_score')
SAMPLE_COLUMNS = ('fid', 'kid', 'precision', 'recall', 'density', 'coverage', 'classes_covered',
                  'mean_confidence')


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4g}' if abs(value) >= 1e-3 or value == 0 else f'{value:.2e}'
  return str(value)


def _value(values: dict[str, Any], name: str) -> str:
  """A metric as written on the page: `mean ± std` when it was measured over several seeds."""
  if name not in values:
    return ''
  if f'{name}_std' in values:
    return f'{_fmt(values[name])} ± {_fmt(values[f"{name}_std"])}'
  return _fmt(values[name])


def _is_spread(name: str) -> bool:
  return name.endswith(('_std', '_per_replica'))


def _sample_table(evaluation: dict[str, Any]) -> list[str]:
  rows = [('latest checkpoint', evaluation.get('latest')), ('best-FID checkpoint',
                                                            evaluation.get('best'))]
  refs = evaluation.get('references', {})
  rows += [(f'reference: {name.replace("_", " ")}', refs.get(name))
           for name in ('real_train_images', 'uniform_noise', 'one_repeated_image')]
  rows = [(label, scores) for label, scores in rows if scores]
  if not rows:
    return []
  columns = [c for c in SAMPLE_COLUMNS if any(c in scores for _, scores in rows)]
  first = rows[0][1]
  lines = [f'Sample metrics: N = {first["num_samples"]} generated vs N real {first["split"]} '
           f'images, features of {first["extractor"]}.', '',
           '| images | step | ' + ' | '.join(columns) + ' |',
           '|---|---|' + '---|' * len(columns)]
  for label, scores in rows:
    step = scores.get('step', '')
    lines.append(f'| {label} | {step} | ' + ' | '.join(_value(scores, c) for c in columns)
                 + ' |')
  return lines + ['']


def section(summary: dict[str, Any]) -> list[str]:
  data = summary['data']
  data_text = (f'{data["dataset"]} ({data["source"]}: {data["train_examples"]:,} train / '
               f'{data["test_examples"]:,} test images)')
  if data.get('note'):
    data_text += f', {data["note"]}'
  minutes = summary['train_wall_s'] / 60
  lines = [f'## {summary["title"]}', '',
           f'`{summary["script"]}` ({summary["mode"]} mode, {summary["date"][:10]})', '',
           f'- runs: `{summary["train_command"]}`'
           + (f', then `{summary["eval_command"]}`' if summary.get('eval_command') else ''),
           f'- data: {data_text}',
           f'- {summary["steps"]:,} steps of batch {summary["batch_size"]}; training took '
           f'{minutes:.1f} min on {summary["machine"]}']
  full = summary.get('full_mode')
  if full and summary['mode'] == 'quick':
    estimate = (f', about {full["estimated_minutes_here"]:,.0f} min on this machine at this run\'s '
                'measured images/s' if 'estimated_minutes_here' in full else '')
    lines.append(f'- full mode (without --quick): {full["steps"]:,} steps of batch '
                 f'{full["batch_size"]}{estimate}; not timed on a GPU here')
  seed = summary.get('original_numbers') or {}
  evaluation = summary.get('sample_metrics')
  # With sample metrics, their eval_ values show in their own table below, not twice.
  metrics = summary['metrics']
  shown = [k for k in metrics if not _is_spread(k)
           and not (evaluation and k.startswith('eval_') and k[5:] in SAMPLE_METRIC_NAMES)]
  seeds = summary.get('num_seeds', 1)
  ours = f'ours (mean ± std over {seeds} seeds)' if seeds > 1 else 'ours'
  lines += ['', f'| metric (last step) | {ours} | original report |', '|---|---|---|']
  lines += [f'| `{k}` | {_value(metrics, k)} | {_fmt(seed[k]) if k in seed else ""} |'
            for k in shown]
  lines.append('')
  if evaluation:
    lines += _sample_table(evaluation)
  elif summary.get('generator'):
    lines += ['Sample metrics: not computed; they need a feature network for these images '
              '(`--extractor=python:module:function`, see docs/sample_quality.md).', '']
  if summary.get('original_report'):
    lines += [f'Original report: {summary["original_report"]}', '']
  for figure in summary['figures']:
    lines += [f'![{figure}]({summary["name"]}/{figure})', '']
  return lines


def write(results_dir: str) -> str:
  """Regenerates results_dir/README.md from results_dir/*/summary.json; returns its path."""
  summaries = {}
  for name in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
    path = os.path.join(results_dir, name, 'summary.json')
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        summaries[name] = json.load(f)
  names = [n for n in ORDER if n in summaries] + sorted(set(summaries) - set(ORDER))
  lines = ['# Results', '',
           'Generated by `experiments/results_page.py` from the `summary.json` each experiment '
           'script writes; do not edit by hand. Quick-mode results are few-minute CPU runs that '
           'show the pipeline works end to end, not converged numbers; see each section\'s mode.', '']
  lines += [f'- [{summaries[n]["title"]}](#{_anchor(summaries[n]["title"])}) '
            f'({summaries[n]["mode"]})' for n in names]
  lines.append('')
  for name in names:
    lines += section(summaries[name])
  path = os.path.join(results_dir, 'README.md')
  os.makedirs(results_dir, exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))
  return path


def _anchor(title: str) -> str:
  return ''.join(c for c in title.lower().replace(' ', '-') if c.isalnum() or c in '-_')


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--results_dir', default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), 'results'))
  print(write(parser.parse_args().results_dir))
