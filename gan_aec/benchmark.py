r"""Times each model's jitted train step and the input pipeline, against the machine's matmul
ceiling.

  python -m gan_aec.benchmark                       # every model, at its config's batch size
  python -m gan_aec.benchmark --model=dcgan --batch_size=256 --steps=20 --json
  python -m gan_aec.benchmark --model=dcgan --celeb_a_images=20000   # a longer pipeline timing
  python -m gan_aec.benchmark --compute_dtype=bfloat16   # the models' bfloat16 option (GPU/TPU)
  python -m gan_aec.benchmark --model=vae --num_seeds=1,2,4,8 --pytorch   # many seeds at once
  python -m gan_aec.benchmark --model=vae --num_seeds=2,8 --profile   # time by kind of op

For each model the train step of each K is compiled exactly as the training loop compiles it
(`gan_aec.run.sharding.jit_steps`) and warmed up; then the K's are timed in turn, `--repeats`
rounds of one run of `--steps` steps each (block_until_ready after each run), so that a shared
machine's slow minutes fall on every K alike; the median run is reported. Columns:
  images/s       batch_size * steps / median seconds.
  GFLOP/s        useful FLOPs per step (XLA's cost analysis of the same step built with the
                 textbook layers, `conv_implementation='xla'`, so the zero taps our fast layers add
                 do not count) * steps / seconds.
  % ceiling      GFLOP/s over a float32 matmul's GFLOP/s measured in the same run.
  compile s      lowering + compilation time of the train step.
With --pytorch (and torch installed) the same models in eager PyTorch are timed in the same run,
so the speed ratio is measured on one machine at one time: one process using every core, and one
single-threaded process per core side by side (their total images/s); PyTorch trains K models one
after another, so its images/s does not depend on K. The speedup is against the faster of the two.
"""

from __future__ import annotations

import json
import math

from absl import app
from absl import flags
import jax

from gan_aec.run import benchmarking, config as config_lib, cpu_devices, profiling, tasks

MODELS = benchmarking.MODELS

_MODEL = flags.DEFINE_list('model', None, f'Models to time (default: all of {", ".join(MODELS)} '
                           'that exist).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, "Batch size (default: each config's).",
                                   lower_bound=1)
_STEPS = flags.DEFINE_integer('steps', 20, 'Train steps per timed run.', lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs; the median is reported.',
                                lower_bound=1)
_COMPUTE_DTYPE = flags.DEFINE_enum(
    'compute_dtype', None, list(config_lib.COMPUTE_DTYPES),
    "The models' config.compute_dtype (default: each config's, float32).")
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object per model instead of a table.')
_PIPELINE = flags.DEFINE_bool('pipeline', True, 'Also time the input pipelines.')
_PYTORCH = flags.DEFINE_bool('pytorch', False, 'Also time the same models in eager PyTorch '
                             '(needs torch and the repository\'s pytorch_port/ folder).')
_NUM_SEEDS = flags.DEFINE_list('num_seeds', ['1'], 'Replicas trained as one program '
                                '(config.num_seeds); several, e.g. 1,2,4,8, give a row each. '
                                "images/s counts every replica's images.")
_PROFILE = flags.DEFINE_bool('profile', False, 'Also print where each step spends its time, '
                             'by kind of op (XLA:CPU op tracing; gan_aec.run.profiling).')
_CELEB_A_IMAGES = flags.DEFINE_integer('celeb_a_images', 2000, 'Synthetic JPEGs for the CelebA '
                                       'pipeline timing (0: skip it).', lower_bound=0)


def _pytorch_rates(model: str, batch_size: int) -> dict[str, float]:
  """Eager PyTorch's training images/s for `model` on this machine: one process using every
  core, and one single-threaded process per core side by side (their total)."""
  try:
    from pytorch_port import timing  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise app.UsageError(f'--pytorch needs PyTorch and the pytorch_port/ folder of a gan_aec '
                         f'checkout (run from its root): {e}') from e
  return {'pytorch_images_per_s': timing.images_per_s(model, batch_size, _STEPS.value,
                                                      _REPEATS.value),
          'pytorch_per_core_images_per_s': timing.images_per_s_per_core(
              model, batch_size, _STEPS.value, _REPEATS.value)}


def available_models() -> list[str]:
  return [m for m in MODELS if m in tasks.REGISTRY]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  models = _MODEL.value or available_models()
  unknown = [m for m in models if m not in tasks.REGISTRY]
  if unknown:
    raise app.UsageError(f'Unknown or not yet available model(s) {unknown}; available: '
                         f'{available_models()}.')
  if _PROFILE.value:
    profiling.enable_op_tracing()  # Before JAX starts its CPU backend.
  try:
    num_seeds = [int(k) for k in _NUM_SEEDS.value]
  except ValueError:
    num_seeds = []
  if not num_seeds or min(num_seeds) < 1:
    raise app.UsageError(f'--num_seeds={",".join(_NUM_SEEDS.value)}: give positive integers '
                         'separated by commas, e.g. --num_seeds=1,2,4,8.')
  configs = [config_lib.load_config(name) for name in models]
  for config in configs:
    if _BATCH_SIZE.value:
      config.batch_size = _BATCH_SIZE.value
    config.num_seeds = math.lcm(*num_seeds)  # A device split that fits every K timed.
  cpu_devices.split_for_configs(configs)  # One CPU device per core, as gan_aec.main does.
  ceiling = benchmarking.matmul_ceiling_gflops()
  records = []
  for name in models:
    # Every K of a model is compiled first and then timed in turn, so that the machine's slow
    # and fast minutes (a shared VM's) fall on each K alike: the ratios between them hold.
    timers = [benchmarking.prepare(name, _BATCH_SIZE.value, _COMPUTE_DTYPE.value, num_seeds=k)
              for k in num_seeds]
    benchmarking.time_models(timers, _STEPS.value, _REPEATS.value)
    profiles = [timer.profile(_STEPS.value) if _PROFILE.value else None for timer in timers]
    flops = benchmarking.step_flops(name, _BATCH_SIZE.value)
    torch_rates = None
    for timer, profile in zip(timers, profiles):
      record = timer.record(_STEPS.value, flops)
      if profile:
        record['profile'] = profile
      record['percent_of_ceiling'] = 100 * record['gflops_per_s'] / ceiling
      record['ceiling_gflops_per_s'] = ceiling
      if _PYTORCH.value:
        # PyTorch trains K models one after another: its total images/s does not depend on K.
        torch_rates = torch_rates or _pytorch_rates(name, record['batch_size'])
        record.update(torch_rates)
        best = max(torch_rates.values())
        record['speedup_vs_pytorch'] = record['images_per_s'] / best
      records.append(record)
      if _JSON.value:
        print(json.dumps(record), flush=True)
    del timers
  pipelines = []
  if _PIPELINE.value:
    pipelines.append(benchmarking.time_mnist_pipeline())
    if _CELEB_A_IMAGES.value:
      pipelines += benchmarking.time_celeb_a_pipeline(_CELEB_A_IMAGES.value)
  if _JSON.value:
    for record in pipelines:
      print(json.dumps(record), flush=True)
    return
  print(f'\n{jax.default_backend()} x{jax.device_count()}, float32 matmul ceiling '
        f'{ceiling:.0f} GFLOP/s; models in {_COMPUTE_DTYPE.value or "float32 (configs)"}\n')
  header = (f'{"model":<24}{"batch":>6}{"K":>4}{"images/s":>11}{"ms/step":>9}{"GFLOP/s":>9}'
            f'{"% ceil":>8}{"compile s":>10}')
  if _PYTORCH.value:
    header += f'{"torch 1 proc":>13}{"torch procs":>12}{"speedup":>9}'
  print(header)
  for r in records:
    line = (f'{r["model"]:<24}{r["batch_size"]:>6}{r["num_seeds"]:>4}{r["images_per_s"]:>11.0f}'
            f'{r["step_ms"]:>9.1f}{r["gflops_per_s"]:>9.1f}{r["percent_of_ceiling"]:>7.0f}%'
            f'{r["compile_s"]:>10.1f}')
    if _PYTORCH.value:
      line += (f'{r["pytorch_images_per_s"]:>13.0f}{r["pytorch_per_core_images_per_s"]:>12.0f}'
               f'{r["speedup_vs_pytorch"]:>8.2f}x')
    print(line)
  for r in records:
    if 'profile' in r:
      print(f'\n{r["model"]}, K={r["num_seeds"]}: time by kind of op, ms per step (all devices '
            'added up: ops that ran at once on several devices each count)')
      for row in r['profile']:
        print(f'  {row["kind"]:<28}{row["ms_per_step"]:>9.1f} ms{row["ops_per_step"]:>8.0f} ops')
  for r in pipelines:
    batch = f' (batch {r["batch_size"]})' if r['batch_size'] else ''
    print(f'input pipeline {r["pipeline"]}: {r["images_per_s"]:.0f} images/s{batch}')


if __name__ == '__main__':
  app.run(main)
