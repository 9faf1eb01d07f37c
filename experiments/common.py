"""What every experiment script shares: train a config, evaluate it, collect its figures and numbers
into `experiments/results/<name>/summary.json`, and regenerate the results page.

Each script in this folder is one `Experiment` and ends with `common.main(EXPERIMENT)`; run them
from the repository root as modules, e.g. `python -m experiments.vae_mnist --quick`. Options:
  --quick            the few-minutes CPU version (fewer steps; every other setting as the report's)
  --data_dir=DIR     the TFDS data dir (e.g. MNIST imported with `python -m gan_aec.prepare_data`)
  --data_note=TEXT   how the data was made, shown on the results page (e.g. "synthetic CelebA files")
  --extractor=SPEC   feature extractor of the sample metrics (default for MNIST generators: the
                     classifier of experiments/mnist_classifier.py, trained first if needed)
  --runs_dir=DIR     where the runs' workdirs go (default runs/experiments)
  --results_dir=DIR  where the results go (default experiments/results)
  --fresh            start the run over instead of resuming it (quick runs always start over)
  --num_seeds=K      train K seeds (seed 0..K-1) as one program (config.num_seeds); the results
                     page then shows each metric's mean +- std over the seeds
The training and evaluation are `gan_aec.run.loop.train_and_evaluate` and
`gan_aec.run.evaluation.evaluate_checkpoints`,
the functions behind `python -m gan_aec.main` and `python -m gan_aec.evaluate`; each summary records
the equivalent command lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import time
from typing import Any

from gan_aec.run import (config as config_lib, cpu_devices, evaluation, loop, metric_logging,
                         startup, workdir as run_workdir)

from experiments import results_page

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFIER = 'mnist_classifier'


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One experiment of the original report.

  Attributes:
    name: results/<name>/ and the script's file name.
    title: the heading on the results page.
    config: the config, with variants, e.g. 'configs/dcgan.py:celeb_a'.
    quick: config overrides of the --quick mode (dotted field names).
    figures: files of WORKDIR/figures/ collected into the results.
    train_metrics: training metrics shown (their values at the last step), e.g. ('loss',).
    sample_metrics: a generator: FID, KID, precision/recall, ... by gan_aec.evaluate.
    original_report: what the original report shows for this experiment (prose, shown beside ours).
    original_numbers: the report's values of our metrics, where it gives them (a column beside
      ours on the page), e.g. {'loss': 0.097}.
  """
  name: str
  title: str
  config: str
  quick: dict[str, Any]
  figures: tuple[str, ...]
  train_metrics: tuple[str, ...] = ()
  sample_metrics: bool = False
  original_report: str = ''
  original_numbers: dict[str, float] = dataclasses.field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--data_note', default=None)
  parser.add_argument('--extractor', default=None)
  parser.add_argument('--runs_dir', default=os.path.join(REPO, 'runs', 'experiments'))
  parser.add_argument('--results_dir', default=os.path.join(REPO, 'experiments', 'results'))
  parser.add_argument('--fresh', action='store_true')
  parser.add_argument('--num_seeds', type=int, default=1)
  return parser.parse_args(argv)


def build_config(experiment: Experiment, args: argparse.Namespace):
  """The experiment's config with the quick overrides and --data_dir applied; and the overrides."""
  path, _, variant = experiment.config.partition(':')
  config = config_lib.load_config(os.path.join(REPO, path), variant or None)
  overrides = dict(experiment.quick) if args.quick else {}
  if getattr(args, 'num_seeds', 1) > 1:
    overrides['num_seeds'] = args.num_seeds
  if args.data_dir:
    overrides['dataset.data_dir'] = os.path.abspath(args.data_dir)
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config, overrides


DATA_DIR_PLACEHOLDER = '<data_dir>'  # Where a user's own copy of the data lies: not ours to record.


def _command(experiment: Experiment, workdir: str, overrides: dict[str, Any]) -> str:
  """The `python -m gan_aec.main` line that trains this run, with paths a reader can use."""
  flags = ' '.join(f'--config.{k}={DATA_DIR_PLACEHOLDER if k == "dataset.data_dir" else v}'
                   for k, v in overrides.items())
  return (f'python -m gan_aec.main --config={experiment.config} --workdir={_rel(workdir)}'
          + (f' {flags}' if flags else ''))


def _rel(path: str) -> str:
  """A path relative to the repository; outside it, only its last component (never a machine's
  absolute path in a committed file)."""
  rel = os.path.relpath(path, REPO)
  return os.path.join('<outside the repository>', os.path.basename(path)) if rel.startswith('..') else rel


def machine() -> str:
  """CPU model and cores, and the JAX devices, in words."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  devices = jax.devices()
  return (f'{cpu}, {os.cpu_count()} cores; JAX {jax.__version__} on {len(devices)} '
          f'{devices[0].platform.upper()} device(s) ({devices[0].device_kind})')


def final_metrics(records: list[dict[str, Any]], train_keys: tuple[str, ...]) -> dict[str, Any]:
  """The last evaluation's eval_* values and the last logged value of each train key."""
  out: dict[str, Any] = {}
  for record in records:
    if 'event' in record:
      continue
    for key, value in record.items():
      base = key.removesuffix('_per_replica').removesuffix('_std')
      if base.startswith('eval_') or base in train_keys:
        out[key] = value
  return out


def ensure_classifier(args: argparse.Namespace) -> str:
  """The workdir of experiments/mnist_classifier.py (in the same mode), trained if not yet."""
  from experiments import mnist_classifier  # pylint: disable=g-import-not-at-top
  workdir = workdir_for(mnist_classifier.EXPERIMENT, args)
  summary = os.path.join(args.results_dir, CLASSIFIER, 'summary.json')
  if not os.path.exists(summary) or run_workdir.saved_config(workdir) is None:
    run(mnist_classifier.EXPERIMENT, args)
  return workdir


def workdir_for(experiment: Experiment, args: argparse.Namespace) -> str:
  return os.path.join(os.path.abspath(args.runs_dir),
                      experiment.name + ('_quick' if args.quick else ''))


def run(experiment: Experiment, args: argparse.Namespace) -> dict[str, Any]:
  """Trains, evaluates and collects one experiment; returns its summary."""
  config, overrides = build_config(experiment, args)
  cpu_devices.split_for_configs([config])  # One CPU device per core, as gan_aec.main does.
  extractor = None
  if experiment.sample_metrics:
    extractor = args.extractor or (ensure_classifier(args) if config.dataset.name == 'mnist'
                                   else None)
  if extractor:
    config.sample_metrics.extractor = extractor
  workdir = workdir_for(experiment, args)
  if (args.quick or args.fresh) and os.path.exists(workdir):
    shutil.rmtree(workdir)
  start = time.time()
  loop.train_and_evaluate(config, workdir)
  train_seconds = time.time() - start
  sample_scores = None
  eval_command = None
  if extractor:
    sample_scores = evaluation.evaluate_checkpoints(workdir, checkpoint='latest,best',
                                                   extractor=extractor, references=True)
    eval_command = (f'python -m gan_aec.evaluate --workdir={_rel(workdir)} '
                    '--checkpoint=latest,best --references')

  out_dir = os.path.join(args.results_dir, experiment.name)
  shutil.rmtree(out_dir, ignore_errors=True)
  os.makedirs(out_dir)
  figures = []
  figures_dir = startup.layout(config, workdir).replica(0).figures  # The first seed's figures.
  for name in experiment.figures:
    source = os.path.join(figures_dir, name)
    if os.path.exists(source):
      shutil.copy(source, os.path.join(out_dir, name))
      figures.append(name)
  records = metric_logging.read_records(workdir)
  run_start = next(r for r in records if r.get('event') == 'run_start')
  summary = {
      'name': experiment.name, 'title': experiment.title,
      'mode': 'quick' if args.quick else 'full',
      'num_seeds': config.num_seeds,
      'script': f'python -m experiments.{experiment.name}' + (' --quick' if args.quick else '')
                + (f' --num_seeds={args.num_seeds}' if args.num_seeds > 1 else '')
                + (f' --data_dir={DATA_DIR_PLACEHOLDER}' if args.data_dir else ''),
      'train_command': _command(experiment, workdir, overrides),
      'eval_command': eval_command,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'machine': machine(),
      'train_wall_s': round(train_seconds, 1),
      'steps': config.num_train_steps, 'batch_size': config.batch_size,
      'data': {'dataset': config.dataset.name, 'source': run_start.get('dataset.source'),
               'train_examples': run_start.get('train_examples'),
               'test_examples': run_start.get('test_examples'), 'note': args.data_note},
      'metrics': final_metrics(records, experiment.train_metrics),
      'generator': experiment.sample_metrics, 'sample_metrics': sample_scores,
      'figures': figures,
      'full_mode': _full_mode(experiment, args, records),
      'original_report': experiment.original_report, 'original_numbers':
      experiment.original_numbers,
  }
  with open(os.path.join(out_dir, 'summary.json'), 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=1)
  results_page.write(args.results_dir)
  return summary


def _full_mode(experiment: Experiment, args: argparse.Namespace,
               records: list[dict[str, Any]]) -> dict[str, Any]:
  """The full mode's size, and its time on this machine at this run's measured images/s."""
  full, _ = build_config(experiment, argparse.Namespace(**{**vars(args), 'quick': False}))
  rates = [r['images_per_s'] for r in records if 'images_per_s' in r]
  out = {'steps': full.num_train_steps, 'batch_size': full.batch_size}
  if rates:
    out['estimated_minutes_here'] = round(
        full.num_train_steps * full.batch_size / rates[-1] / 60, 1)
  return out


def main(experiment: Experiment, argv: list[str] | None = None) -> dict[str, Any]:
  """The command line of an experiment script."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  args = parse_args(argv)
  summary = run(experiment, args)
  print(f'{experiment.title}: {summary["metrics"]}\nResults in '
        f'{os.path.join(args.results_dir, experiment.name)}; page '
        f'{os.path.join(args.results_dir, "README.md")}')
  return summary
