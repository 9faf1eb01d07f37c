r"""Times each model's jitted train step and the input pipeline, against the machine's matmul ceiling.

  python -m gan_aec.benchmark                       # every model, at its config's batch size
  python -m gan_aec.benchmark --model=dcgan --batch_size=256 --steps=20 --json
  python -m gan_aec.benchmark --model=dcgan --celeb_a_images=20000   # a longer pipeline timing
  python -m gan_aec.benchmark --compute_dtype=bfloat16   # the models' bfloat16 option (GPU/TPU)

For each model the train step is compiled exactly as the training loop compiles it
(`gan_aec.train.jit_steps`), warmed up, then timed over `--repeats` runs of `--steps` steps
(block_until_ready after each run); the median is reported. Columns:
  images/s       batch_size * steps / median seconds.
  GFLOP/s        useful FLOPs per step (XLA's cost analysis of the same step built with the
                 textbook layers, `conv_implementation='xla'`, so the zero taps our fast layers add
                 do not count) * steps / seconds.
  % ceiling      GFLOP/s over a float32 matmul's GFLOP/s measured in the same run.
  compile s      lowering + compilation time of the train step.
With --pytorch (and torch installed) the same models in eager PyTorch are timed in the same run,
so the speed ratio is measured on one machine at one time.
"""

from __future__ import annotations

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gan_aec import config_lib, cpu_cores, datasets, input_pipeline, mnist_data, tasks, train

MODELS = ('autoencoder', 'denoising_autoencoder', 'vae', 'dcgan')

_MODEL = flags.DEFINE_list('model', None, f'Models to time (default: all of {", ".join(MODELS)} '
                           'that exist).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, "Batch size (default: each config's).")
_STEPS = flags.DEFINE_integer('steps', 20, 'Train steps per timed run.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs; the median is reported.')
_COMPUTE_DTYPE = flags.DEFINE_enum(
    'compute_dtype', None, list(config_lib.COMPUTE_DTYPES),
    "The models' config.compute_dtype (default: each config's, float32).")
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object per model instead of a table.')
_PIPELINE = flags.DEFINE_bool('pipeline', True, 'Also time the input pipelines.')
_PYTORCH = flags.DEFINE_bool('pytorch', False, 'Also time the same models in eager PyTorch.')
_CELEB_A_IMAGES = flags.DEFINE_integer('celeb_a_images', 2000, 'Synthetic JPEGs for the CelebA '
                                       'pipeline timing (0: skip it).')


def median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_ceiling_gflops(size: int = 2048, repeats: int = 5) -> float:
  """float32 GFLOP/s of a large jitted matmul: the arithmetic limit any model here can reach."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  matmul(a).block_until_ready()
  seconds = median_seconds(lambda: matmul(a).block_until_ready(), repeats)
  return 2 * size ** 3 / seconds / 1e9


def _synthetic_batch(config, batch_size: int) -> dict[str, np.ndarray]:
  size = config.get('image_size', 28)
  rng = np.random.default_rng(0)
  return {'image': rng.random((batch_size, size, size, datasets.channels(config)), np.float32),
          'label': rng.integers(0, 10, batch_size).astype(np.int32)}


def _step_flops(config, batch_size: int) -> float:
  """Useful FLOPs of one train step: XLA's count for the step built from the textbook layers."""
  textbook = config.copy_and_resolve_references()
  if 'conv_implementation' in textbook:
    textbook.conv_implementation = 'xla'
  if 'compute_dtype' in textbook:
    textbook.compute_dtype = 'float32'
  task = tasks.build_task(textbook)
  batch = _synthetic_batch(textbook, batch_size)
  state = task.create_state(jax.random.key(0), batch)
  # One device: XLA's count for a sharded step would be one device's share.
  one_device = jax.make_mesh((1,), ('data',), axis_types=(jax.sharding.AxisType.Auto,),
                             devices=jax.devices()[:1])
  train_fn, _ = train.jit_steps(task, one_device)
  cost = train_fn.lower(state, batch, jax.random.key(1)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def time_model(name: str, batch_size: int | None, steps: int, repeats: int,
               compute_dtype: str | None = None) -> dict:
  """Compiles and times one model's train step; returns the benchmark record."""
  config = config_lib.load_config(name)
  if compute_dtype:
    config.compute_dtype = compute_dtype
  batch_size = batch_size or config.batch_size
  task = tasks.build_task(config)
  mesh = train.make_mesh(config)
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  batch = train.global_batch(_synthetic_batch(config, batch_size), batch_sharding)
  state = jax.device_put(task.create_state(jax.random.key(0), batch),
                         jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  rng = jax.random.key(1)
  train_fn, _ = train.jit_steps(task, mesh)
  start = time.perf_counter()
  compiled = train_fn.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - start

  holder = {'state': state}
  wait = cpu_cores.wait_for_each_step(mesh)  # As the training loop does.

  def run():
    s = holder['state']
    for _ in range(steps):
      s, metrics = compiled(s, batch, rng)
      if wait:
        jax.block_until_ready(metrics)
    jax.block_until_ready((s, metrics))
    holder['state'] = s

  run()  # Warm-up.
  seconds = median_seconds(run, repeats)
  flops = _step_flops(config, batch_size)
  return {'model': name, 'batch_size': batch_size,
          'compute_dtype': str(config_lib.compute_dtype(config)),
          'images_per_s': batch_size * steps / seconds,
          'step_ms': 1e3 * seconds / steps, 'gflops_per_step': flops / 1e9,
          'gflops_per_s': flops * steps / seconds / 1e9, 'compile_s': compile_s,
          'backend': jax.default_backend(), 'devices': jax.device_count()}


def time_mnist_pipeline(batch_size: int = 200, steps: int = 200) -> dict:
  """Host-side MNIST batches (shuffle, gather, uint8 -> float32) per second, in images/s."""
  batches = input_pipeline.TrainBatches(mnist_data.load_bundled().train, batch_size, seed=0)
  start = time.perf_counter()
  for step in range(steps):
    batches.get(step)
  return {'pipeline': 'mnist (in memory)', 'batch_size': batch_size,
          'images_per_s': batch_size * steps / (time.perf_counter() - start)}


def time_celeb_a_pipeline(num_images: int, image_size: int = 64, batch_size: int = 128,
                          steps: int = 100) -> list[dict]:
  """CelebA's pipeline on a synthetic release in the official layout (gan_aec.celeb_a_synthetic),
  imported like the real files: the first pass (read, decode the crop, resize, write the uint8
  cache) and then batches from the cache (the steady state of every later epoch and run)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from gan_aec import celeb_a_data, celeb_a_import, celeb_a_synthetic  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as root:
    source, data_dir = f'{root}/src', f'{root}/tfds'
    num_test = max(1, num_images // 10)
    celeb_a_synthetic.write_release(source, num_images - num_test, 0, num_test, annotations=False)
    celeb_a_import.write(celeb_a_import.read_source(source), data_dir)
    start = time.perf_counter()
    data = celeb_a_data.load(data_dir, image_size=image_size, download=False)
    first = num_images / (time.perf_counter() - start)
    batches = input_pipeline.TrainBatches(data.train, min(batch_size, len(data.train)), seed=0,
                                          value_range=input_pipeline.TANH_RANGE)
    start = time.perf_counter()
    for step in range(steps):
      batches.get(step)
    cached = batches.batch_size * steps / (time.perf_counter() - start)
  what = f'celeb_a {image_size}px on {num_images} synthetic JPEGs'
  return [{'pipeline': f'{what}, first pass (decode crop, resize, cache)', 'batch_size': None,
           'images_per_s': first},
          {'pipeline': f'{what}, from the cache', 'batch_size': batches.batch_size,
           'images_per_s': cached}]


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
  configs = [config_lib.load_config(name) for name in models]
  if _BATCH_SIZE.value:
    for config in configs:
      config.batch_size = _BATCH_SIZE.value
  cpu_cores.split_for_configs(configs)  # One CPU device per core, as gan_aec.main does.
  ceiling = matmul_ceiling_gflops()
  records = []
  for name in models:
    record = time_model(name, _BATCH_SIZE.value, _STEPS.value, _REPEATS.value,
                        _COMPUTE_DTYPE.value)
    record['percent_of_ceiling'] = 100 * record['gflops_per_s'] / ceiling
    record['ceiling_gflops_per_s'] = ceiling
    if _PYTORCH.value:
      from gan_aec import _torch_reference  # pylint: disable=g-import-not-at-top
      record['pytorch_images_per_s'] = _torch_reference.images_per_s(
          name, record['batch_size'], _STEPS.value, _REPEATS.value)
      record['speedup_vs_pytorch'] = record['images_per_s'] / record['pytorch_images_per_s']
    records.append(record)
    if _JSON.value:
      print(json.dumps(record), flush=True)
  pipelines = []
  if _PIPELINE.value:
    pipelines.append(time_mnist_pipeline())
    if _CELEB_A_IMAGES.value:
      pipelines += time_celeb_a_pipeline(_CELEB_A_IMAGES.value)
  if _JSON.value:
    for record in pipelines:
      print(json.dumps(record), flush=True)
    return
  print(f'\n{jax.default_backend()} x{jax.device_count()}, float32 matmul ceiling '
        f'{ceiling:.0f} GFLOP/s; models in {_COMPUTE_DTYPE.value or "float32 (configs)"}\n')
  header = (f'{"model":<24}{"batch":>6}{"images/s":>11}{"ms/step":>9}{"GFLOP/s":>9}'
            f'{"% ceil":>8}{"compile s":>10}')
  if _PYTORCH.value:
    header += f'{"torch img/s":>12}{"speedup":>9}'
  print(header)
  for r in records:
    line = (f'{r["model"]:<24}{r["batch_size"]:>6}{r["images_per_s"]:>11.0f}{r["step_ms"]:>9.1f}'
            f'{r["gflops_per_s"]:>9.1f}{r["percent_of_ceiling"]:>7.0f}%{r["compile_s"]:>10.1f}')
    if _PYTORCH.value:
      line += f'{r["pytorch_images_per_s"]:>12.0f}{r["speedup_vs_pytorch"]:>8.2f}x'
    print(line)
  for r in pipelines:
    batch = f' (batch {r["batch_size"]})' if r['batch_size'] else ''
    print(f'input pipeline {r["pipeline"]}: {r["images_per_s"]:.0f} images/s{batch}')


if __name__ == '__main__':
  app.run(main)
