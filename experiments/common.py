"""What every experiment script shares: train a config under a named protocol, evaluate it, run
the same model in eager PyTorch, and collect the numbers and figures into
`experiments/results/<name>/summary.json` and the results page.

Each script in this folder is one `Experiment` and ends with `common.main(EXPERIMENT)`; run them
from the repository root as modules, e.g. `python -m experiments.vae_mnist`. Modes:
  (default)  the standard protocol: the experiment's `standard` budget over `standard_seeds`
             seeds in one program, sized to take about an hour on a 2-core CPU (the DCGAN's
             four seeds about 1.5 hours); the numbers on the results page
  --full     the config's full length (the original report's epochs), one seed unless --num_seeds
  --quick    a few minutes, for checks (CI-sized); not numbers
Options:
  --num_seeds=K      seeds 0..K-1 in one program (config.num_seeds); default: the mode's
  --pytorch          also train the same model in eager PyTorch (pytorch_port/) at the same steps
                     over `pytorch_seeds` seeds, scored the same way; the page shows both and
                     their difference
  --data_dir=DIR     the TFDS data dir (e.g. MNIST imported with `python -m gan_aec.prepare_data`)
  --data_note=TEXT   how the data was made, shown on the results page (e.g. "synthetic CelebA
                     files")
  --synthetic_data   the data is synthetic (CelebA here): a check of the pipeline, whose numbers
                     the page does not show as results
  --extractor=SPEC   the sample metrics' feature network (default: the config's; mnist-clf-v1 for
                     MNIST)
  --runs_dir=DIR     where the runs' workdirs go (default runs/experiments)
  --results_dir=DIR  where the results go (default experiments/results)
  --fresh            start the run over instead of resuming it (quick runs always start over)
The training and evaluation are `gan_aec.run.loop.train_and_evaluate` and
`gan_aec.run.evaluation.evaluate_checkpoints`, the functions behind `python -m gan_aec.main` and
`python -m gan_aec.evaluate`; each summary records the equivalent command lines, the code version
that trained the run, its resolved config (tests/test_experiments.py fails when a committed
summary no longer matches what its script would run) and a digest of its own contents (so a hand
edit shows).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import time
from typing import Any, Callable

from gan_aec.run import (config as config_lib, cpu_devices, evaluation, loop, metric_logging,
                         startup, tasks, workdir as run_workdir)

from experiments import results_page

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ('quick', 'standard', 'full')


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One experiment of the original report.

  Attributes:
    name: results/<name>/ and the script's file name.
    title: the heading on the results page.
    config: the config, with variants, e.g. 'configs/dcgan.py:celeb_a'.
    quick: config overrides of the --quick mode (dotted field names).
    standard: config overrides of the standard protocol (the default mode).
    standard_seeds: seeds the standard protocol trains (in one program).
    figures: files of the first seed's figures folder collected into the results.
    train_metrics: training metrics shown (their values at the last step), e.g. ('loss',).
    sample_metrics: a generator: FID, KID, precision/recall, ... by gan_aec.evaluate.
    pytorch_model: the model's name in pytorch_port.train (None: no PyTorch rows).
    pytorch_seeds: seeds the PyTorch rows train (one after another).
    compared: the metrics compared with PyTorch's (names in the summary's metrics).
    original_report: what the original report shows for this experiment (prose, shown beside ours).
    original_numbers: the report's values of our metrics, where it gives them (a column beside
      ours on the page), e.g. {'loss': 0.097}.
    network: for a feature network's experiment, f(workdir) -> {'trained': 'sha256:<hash>' of
      the trained weights, 'shipped': the shipped network's name and hash, 'same': whether they
      are the same weights}.
  """
  name: str
  title: str
  config: str
  quick: dict[str, Any]
  figures: tuple[str, ...]
  standard: dict[str, Any] = dataclasses.field(default_factory=dict)
  standard_seeds: int = 1
  train_metrics: tuple[str, ...] = ()
  sample_metrics: bool = False
  pytorch_model: str | None = None
  pytorch_seeds: int = 0
  compared: tuple[str, ...] = ()
  original_report: str = ''
  original_numbers: dict[str, float] = dataclasses.field(default_factory=dict)
  network: Callable[[str], dict[str, Any]] | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument('--quick', action='store_true')
  mode.add_argument('--full', action='store_true')
  parser.add_argument('--num_seeds', type=int, default=None)
  parser.add_argument('--pytorch', action='store_true')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--data_note', default=None)
  parser.add_argument('--synthetic_data', action='store_true')
  parser.add_argument('--extractor', default=None)
  parser.add_argument('--runs_dir', default=os.path.join(REPO, 'runs', 'experiments'))
  parser.add_argument('--results_dir', default=os.path.join(REPO, 'experiments', 'results'))
  parser.add_argument('--fresh', action='store_true')
  return parser.parse_args(argv)


def mode_of(args: argparse.Namespace) -> str:
  return 'quick' if args.quick else 'full' if getattr(args, 'full', False) else 'standard'


def num_seeds(experiment: Experiment, args: argparse.Namespace) -> int:
  if args.num_seeds:
    return args.num_seeds
  return experiment.standard_seeds if mode_of(args) == 'standard' else 1


def build_config(experiment: Experiment, args: argparse.Namespace):
  """The experiment's config in args' mode, with --num_seeds and --data_dir; and the overrides."""
  path, _, variant = experiment.config.partition(':')
  config = config_lib.load_config(os.path.join(REPO, path), variant or None)
  mode = mode_of(args)
  overrides = dict({'quick': experiment.quick, 'standard': experiment.standard}.get(mode, {}))
  seeds = num_seeds(experiment, args)
  if seeds > 1:
    overrides['num_seeds'] = seeds
  if args.data_dir:
    overrides['dataset.data_dir'] = os.path.abspath(args.data_dir)
  if getattr(args, 'extractor', None):
    overrides['sample_metrics.extractor'] = args.extractor
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return tasks.resolve_defaults(config), overrides


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
  return (os.path.join('<outside the repository>', os.path.basename(path)) if rel.startswith('..')
          else rel)


def _shareable(saved: dict[str, Any]) -> dict[str, Any]:
  """A run's config.json with the data's folders (this machine's paths) as placeholders."""
  saved = json.loads(json.dumps(saved))
  for key in ('data_dir', 'cache_dir'):
    if saved.get('dataset', {}).get(key):
      saved['dataset'][key] = f'<{key}>'
  return saved


def machine() -> str:
  """CPU model and cores, and the JAX devices, in words."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      info = f.read()
    cpu = next(line.split(':', 1)[1].strip() for line in info.splitlines()
               if line.startswith('model name'))
    cpu += ' (AVX-512)' if 'avx512f' in info else ' (AVX2)' if 'avx2' in info else ''
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
      if (base.startswith('eval_') or base in train_keys) and not isinstance(value, str):
        out[key] = value
  return out


def training(records: list[dict[str, Any]]) -> dict[str, Any]:
  """What trained the run, from its metrics.jsonl: the code version of each attempt (start or
  resume), and the wall time of all attempts together (from each start to its last record)."""
  attempts, current = [], None
  for record in records:
    if record.get('event') == 'run_start':
      current = {'code': record.get('code'), 'step': record['step'],
                 'start': record.get('wall_time'), 'end': record.get('wall_time')}
      attempts.append(current)
    elif current is not None and 'wall_time' in record:
      if current['start'] is None:  # A run_start without its wall time: the first record's.
        current['start'] = record['wall_time']
      current['end'] = record['wall_time']
  seconds = sum(a['end'] - a['start'] for a in attempts if a['start'] is not None)
  return {'code': sorted({a['code'] for a in attempts if a['code']}),
          'attempts': len(attempts), 'wall_s': round(seconds, 1)}


def workdir_for(experiment: Experiment, args: argparse.Namespace) -> str:
  suffix = {'quick': '_quick', 'full': '_full'}.get(mode_of(args), '')
  return os.path.join(os.path.abspath(args.runs_dir), experiment.name + suffix)


def spread(values: list[float]) -> dict[str, Any]:
  """{mean, std (ddof 1; 0 for one value), n}."""
  mean = sum(values) / len(values)
  std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
         if len(values) > 1 else 0.0)
  return {'mean': mean, 'std': std, 'n': len(values)}


def pytorch_rows(experiment: Experiment, config, workdir: str) -> dict[str, Any] | None:
  """The same model trained in eager PyTorch at the same steps over experiment.pytorch_seeds
  seeds (pytorch_port.train; kept in WORKDIR_pytorch.jsonl, so seeds already trained are not
  trained again; a seed trained by another version of the port is trained again), with each
  metric's mean, std and per-seed values."""
  from pytorch_port import train as port  # pylint: disable=g-import-not-at-top
  path = workdir + '_pytorch.jsonl'
  steps = config.num_train_steps
  records = []
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      records = [r for r in map(json.loads, f)
                 if r.get('steps') == steps and r.get('port_version', 1) == port.VERSION]
  done = {r['seed'] for r in records}
  for seed in range(experiment.pytorch_seeds):
    if seed not in done:
      record = port.train_seed(experiment.pytorch_model, seed, steps)
      records.append(record)
      with open(path, 'a', encoding='utf-8') as f:
        f.write(json.dumps(record) + '\n')
  records = sorted((r for r in records if r['seed'] < experiment.pytorch_seeds),
                   key=lambda r: r['seed'])
  finished = [r for r in records if 'diverged_at_step' not in r]
  metrics = {}
  for key in sorted({k for r in finished for k in r if k.startswith('eval_')}):
    values = [r[key] for r in finished]
    stats = spread(values)
    metrics.update({key: stats['mean'], f'{key}_std': stats['std'],
                    f'{key}_per_replica': values})
  seeds = f'0-{experiment.pytorch_seeds - 1}' if experiment.pytorch_seeds > 1 else '0'
  return {'command': f'python -m pytorch_port.train --model={experiment.pytorch_model} '
                     f'--seeds={seeds} --steps={steps}',
          'code': sorted({r['code'] for r in records if r.get('code')}),
          'seeds': [r['seed'] for r in records], 'finished': len(finished),
          'diverged': [r['seed'] for r in records if 'diverged_at_step' in r],
          'wall_s': round(sum(r.get('train_wall_s', 0.0) for r in records), 1),
          'extractor': next((r['extractor'] for r in finished if 'extractor' in r), None),
          'metrics': metrics}


def differences(ours: dict[str, Any], theirs: dict[str, Any], names: tuple[str, ...],
                our_seeds: int, their_seeds: int) -> dict[str, dict[str, float]]:
  """ours - theirs for each metric, with the standard error of that difference of two means
  (sqrt(s1^2 / n1 + s2^2 / n2)), where both have it."""
  out = {}
  for name in names:
    if name in ours and name in theirs:
      se = math.sqrt(ours.get(f'{name}_std', 0.0) ** 2 / our_seeds
                     + theirs.get(f'{name}_std', 0.0) ** 2 / their_seeds)
      out[name] = {'difference': ours[name] - theirs[name], 'standard_error': se}
  return out


def digest(summary: dict[str, Any]) -> str:
  """A hash of a summary's contents without its own 'digest' field: a hand edit changes it."""
  body = {k: v for k, v in summary.items() if k != 'digest'}
  return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def run(experiment: Experiment, args: argparse.Namespace) -> dict[str, Any]:
  """Trains (or resumes), evaluates and collects one experiment; returns its summary."""
  mode = mode_of(args)
  config, overrides = build_config(experiment, args)
  cpu_devices.split_for_configs([config])  # One CPU device per core, as gan_aec.main does.
  extractor = config_lib.extractor_spec(config)
  workdir = workdir_for(experiment, args)
  if (mode == 'quick' or args.fresh) and os.path.exists(workdir):
    shutil.rmtree(workdir)
    if os.path.exists(workdir + '_pytorch.jsonl'):
      os.remove(workdir + '_pytorch.jsonl')
  start = time.time()
  loop.train_and_evaluate(config, workdir)
  logging_seconds = time.time() - start
  sample_scores = None
  eval_command = None
  if experiment.sample_metrics and extractor:
    sample_scores = evaluation.evaluate_checkpoints(workdir, checkpoint='latest,best',
                                                   extractor=extractor, references=True)
    eval_command = (f'python -m gan_aec.evaluate --workdir={_rel(workdir)} '
                    '--checkpoint=latest,best --references')
  torch_rows = (pytorch_rows(experiment, config, workdir)
                if args.pytorch and experiment.pytorch_model else None)

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
  trained = training(records)
  metrics = final_metrics(records, experiment.train_metrics)
  seeds = int(config.get('num_seeds', 1))
  script = (f'python -m experiments.{experiment.name}' + {'quick': ' --quick', 'full': ' --full'}
            .get(mode, '') + (f' --num_seeds={args.num_seeds}' if args.num_seeds else '')
            + (' --pytorch' if torch_rows else '')
            + (f' --data_dir={DATA_DIR_PLACEHOLDER}' if args.data_dir else '')
            + (' --synthetic_data' if args.synthetic_data else ''))
  summary = {
      'name': experiment.name, 'title': experiment.title, 'mode': mode,
      'num_seeds': seeds, 'script': script,
      'train_command': _command(experiment, workdir, overrides),
      'eval_command': eval_command,
      'code': trained['code'],
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'machine': machine(),
      'train_wall_s': trained['wall_s'] or round(logging_seconds, 1),
      'steps': config.num_train_steps, 'batch_size': config.batch_size,
      'data': {'dataset': config.dataset.name, 'source': run_start.get('dataset.source'),
               'train_examples': run_start.get('train_examples'),
               'test_examples': run_start.get('test_examples'), 'note': args.data_note,
               'synthetic': args.synthetic_data},
      'config': _shareable(run_workdir.saved_config(workdir)),
      'metrics': metrics,
      'generator': experiment.sample_metrics, 'sample_metrics': sample_scores,
      'pytorch': torch_rows,
      'differences': (differences(metrics, torch_rows['metrics'], experiment.compared, seeds,
                                  max(1, torch_rows['finished'])) if torch_rows else None),
      'figures': figures,
      'full_mode': _full_mode(experiment, args),
      'original_report': experiment.original_report,
      'original_numbers': experiment.original_numbers,
  }
  if experiment.network:
    summary['network'] = experiment.network(workdir)
  summary['digest'] = digest(summary)
  with open(os.path.join(out_dir, 'summary.json'), 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=1)
  results_page.write(args.results_dir)
  return summary


def _full_mode(experiment: Experiment, args: argparse.Namespace) -> dict[str, Any]:
  """The full mode's size (the page scales this run's wall time to it)."""
  full, _ = build_config(experiment, argparse.Namespace(**{**vars(args), 'quick': False,
                                                           'full': True, 'num_seeds': 1}))
  return {'steps': full.num_train_steps, 'batch_size': full.batch_size}


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
