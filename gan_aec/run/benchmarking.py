"""Timing of each model's jitted train step and of the input pipelines (`python -m gan_aec.benchmark`).

Each model's train step is compiled exactly as the training loop compiles it
(gan_aec.run.sharding.jit_steps), warmed up, then timed over `repeats` runs of `steps` steps
(block_until_ready after each run); the median is reported, with the useful FLOPs per step (XLA's
cost analysis of the same step built with the textbook layers, `conv_implementation='xla'`, so
the zero taps our fast layers add do not count) and the machine's float32 matmul ceiling.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from gan_aec.data import batching, celeb_a, celeb_a_import, celeb_a_synthetic, mnist
from gan_aec.run import config as config_lib, cpu_devices, sharding, tasks

MODELS = ('autoencoder', 'denoising_autoencoder', 'vae', 'dcgan')


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
  size = config_lib.image_size(config)
  rng = np.random.default_rng(0)
  return {'image': rng.random((batch_size, size, size, config_lib.channels(config)), np.float32),
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
  train_fn, _ = sharding.jit_steps(task, one_device)
  cost = train_fn.lower(state, batch, jax.random.key(1)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def time_model(name: str, batch_size: int | None, steps: int, repeats: int,
               compute_dtype: str | None = None, num_seeds: int = 1) -> dict:
  """Compiles and times one model's train step (of num_seeds replicas trained as one program,
  as the training loop compiles it for config.num_seeds); returns the benchmark record, whose
  images/s counts every replica's images."""
  config = config_lib.load_config(name)
  if compute_dtype:
    config.compute_dtype = compute_dtype
  batch_size = batch_size or config.batch_size
  task = tasks.build_task(config)
  mesh = sharding.make_mesh(config, num_seeds)
  host_batch = _synthetic_batch(config, batch_size)
  if num_seeds == 1:
    batch = sharding.global_batch(host_batch, sharding.batch_sharding(mesh))
    state = jax.jit(task.create_state, out_shardings=sharding.replicated(mesh))(
        jax.random.key(0), host_batch)
    extra = (jax.random.key(1),)
    train_fn, _ = sharding.jit_steps(task, mesh)
  else:
    stacked = sharding.replica_sharding(mesh)
    batch = {k: sharding.put_global(np.stack([v] * num_seeds), sharding.replica_batch_sharding(mesh))
             for k, v in host_batch.items()}
    keys = sharding.put_keys(jax.random.split(jax.random.key(0), num_seeds), stacked)
    state = jax.jit(jax.vmap(task.create_state, in_axes=(0, None)), out_shardings=stacked)(
        keys, host_batch)
    extra = (sharding.put_keys(jax.random.split(jax.random.key(1), num_seeds), stacked), {})
    train_fn, _ = sharding.jit_replica_steps(task, mesh)
  start = time.perf_counter()
  compiled = train_fn.lower(state, batch, *extra).compile()
  compile_s = time.perf_counter() - start

  holder = {'state': state}
  wait = cpu_devices.wait_for_each_step(mesh)  # As the training loop does.

  def run():
    s = holder['state']
    for _ in range(steps):
      s, metrics = compiled(s, batch, *extra)
      if wait:
        jax.block_until_ready(metrics)
    jax.block_until_ready((s, metrics))
    holder['state'] = s

  run()  # Warm-up.
  seconds = median_seconds(run, repeats)
  flops = _step_flops(config, batch_size)
  images = batch_size * num_seeds
  return {'model': name, 'batch_size': batch_size, 'num_seeds': num_seeds,
          'compute_dtype': str(config_lib.compute_dtype(config)),
          'images_per_s': images * steps / seconds,
          'step_ms': 1e3 * seconds / steps, 'gflops_per_step': num_seeds * flops / 1e9,
          'gflops_per_s': num_seeds * flops * steps / seconds / 1e9, 'compile_s': compile_s,
          'backend': jax.default_backend(), 'devices': mesh.size}


def time_mnist_pipeline(batch_size: int = 200, steps: int = 200) -> dict:
  """Host-side MNIST batches (shuffle, gather, uint8 -> float32) per second, in images/s."""
  batches = batching.TrainBatches(mnist.load_bundled().train, batch_size, seed=0)
  start = time.perf_counter()
  for step in range(steps):
    batches.get(step)
  return {'pipeline': 'mnist (in memory)', 'batch_size': batch_size,
          'images_per_s': batch_size * steps / (time.perf_counter() - start)}


def time_celeb_a_pipeline(num_images: int, image_size: int = 64, batch_size: int = 128,
                          steps: int = 100) -> list[dict]:
  """CelebA's pipeline on a synthetic release in the official layout (gan_aec.data.celeb_a_synthetic),
  imported like the real files: the first pass (read, decode the crop, resize, write the uint8
  cache) and then batches from the cache (the steady state of every later epoch and run)."""
  with tempfile.TemporaryDirectory() as root:
    source, data_dir = f'{root}/src', f'{root}/tfds'
    num_test = max(1, num_images // 10)
    celeb_a_synthetic.write_release(source, num_images - num_test, 0, num_test, annotations=False)
    celeb_a_import.write(celeb_a_import.read_source(source), data_dir)
    start = time.perf_counter()
    data = celeb_a.load(data_dir, image_size=image_size, cache_dir=f'{root}/cache', download=False)
    first = num_images / (time.perf_counter() - start)
    batches = batching.TrainBatches(data.train, min(batch_size, len(data.train)), seed=0,
                                          value_range=batching.TANH_RANGE)
    start = time.perf_counter()
    for step in range(steps):
      batches.get(step)
    cached = batches.batch_size * steps / (time.perf_counter() - start)
  what = f'celeb_a {image_size}px on {num_images} synthetic JPEGs'
  return [{'pipeline': f'{what}, first pass (decode crop, resize, cache)', 'batch_size': None,
           'images_per_s': first},
          {'pipeline': f'{what}, from the cache', 'batch_size': batches.batch_size,
           'images_per_s': cached}]
