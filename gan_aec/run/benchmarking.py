"""Timing of each model's jitted train step and of the input pipelines (`python -m
gan_aec.benchmark`).

Each model's train step is compiled exactly as the training loop compiles it
(gan_aec.run.sharding.jit_steps), warmed up, then timed over `repeats` runs of `steps` steps
(block_until_ready after each run); the median is reported, with the useful FLOPs per step (XLA's
cost analysis of the same step built with the textbook layers, `conv_implementation='xla'`, so
the zero taps our fast layers add do not count) and the machine's float32 matmul ceiling.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gan_aec.data import batching, celeb_a, celeb_a_import, celeb_a_synthetic, mnist
from gan_aec.run import config as config_lib, cpu_devices, profiling, sharding, tasks

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
  # One replica on one device: XLA's count for a sharded step would be one device's share.
  one_device = jax.make_mesh((1, 1), ('replica', 'data'),
                             axis_types=(jax.sharding.AxisType.Auto,) * 2,
                             devices=jax.devices()[:1])
  state = jax.vmap(task.create_state, in_axes=(0, None))(jax.random.key(0)[None], batch)
  train_fn, _ = sharding.jit_steps(task, one_device)
  cost = train_fn.lower((state,), ({k: v[None] for k, v in batch.items()},),
                        (jax.random.key(1)[None],), ({},)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


@dataclasses.dataclass
class TrainStepTimer:
  """One model's compiled train step of `num_seeds` replicas, ready to time (see `prepare`)."""
  name: str
  batch_size: int
  num_seeds: int
  compute_dtype: str
  compile_s: float
  devices: int
  _step: Callable[[], Any]
  _wait_each_step: bool
  _compiled: Any
  seconds: list[float] = dataclasses.field(default_factory=list)

  def time(self, steps: int) -> float:
    """Runs `steps` train steps (waiting for each, as the loop does on several CPU devices);
    records and returns the seconds they took."""
    start = time.perf_counter()
    self._run(steps)
    self.seconds.append(time.perf_counter() - start)
    return self.seconds[-1]

  def _run(self, steps: int) -> None:
    for _ in range(steps):
      metrics = self._step()
      if self._wait_each_step:
        jax.block_until_ready(metrics)
    jax.block_until_ready(metrics)

  def profile(self, steps: int) -> list[dict]:
    """Where `steps` steps spend their time, by kind of op (gan_aec.run.profiling; JAX must have
    started with profiling.TRACEME_FLAG)."""
    return profiling.profile(lambda: self._run(steps), self._compiled.as_text(), steps)

  def record(self, steps: int, flops_per_replica_step: float) -> dict:
    """The benchmark record from the median of the timed runs; images/s counts every replica."""
    seconds = statistics.median(self.seconds)
    images = self.batch_size * self.num_seeds
    flops = self.num_seeds * flops_per_replica_step
    return {'model': self.name, 'batch_size': self.batch_size, 'num_seeds': self.num_seeds,
            'compute_dtype': self.compute_dtype, 'images_per_s': images * steps / seconds,
            'step_ms': 1e3 * seconds / steps, 'gflops_per_step': flops / 1e9,
            'gflops_per_s': flops * steps / seconds / 1e9, 'compile_s': self.compile_s,
            'backend': jax.default_backend(), 'devices': self.devices,
            'timed_runs': len(self.seconds)}


def prepare(name: str, batch_size: int | None, compute_dtype: str | None = None,
            num_seeds: int = 1) -> TrainStepTimer:
  """Compiles one model's train step of num_seeds replicas as the training loop does
  (gan_aec.run.sharding.jit_steps on the mesh the loop would use) and runs it once."""
  config = config_lib.load_config(name)
  if compute_dtype:
    config.compute_dtype = compute_dtype
  batch_size = batch_size or config.batch_size
  task = tasks.build_task(config)
  mesh = sharding.make_mesh(config, num_seeds)
  host_batch = _synthetic_batch(config, batch_size)
  stacked = sharding.replica_sharding(mesh)
  keys = sharding.put_keys(jax.random.split(jax.random.key(0), num_seeds), stacked)
  state = jax.jit(jax.vmap(task.create_state, in_axes=(0, None)), out_shardings=stacked)(
      keys, host_batch)
  train_fn, _ = sharding.jit_steps(task, mesh, num_seeds)
  groups = train_fn.groups
  state = groups.split(state)
  batch = tuple({k: sharding.put_global(np.stack([v] * len(groups.members(g))),
                                        sharding.replica_batch_sharding(mesh))
                 for k, v in host_batch.items()} for g in range(groups.calls))
  extra = (groups.split(sharding.put_keys(jax.random.split(jax.random.key(1), num_seeds),
                                          stacked)), ({},) * groups.calls)
  start = time.perf_counter()
  compiled = train_fn.compile(state, batch, *extra)
  compile_s = time.perf_counter() - start
  holder = {'state': state}

  def step():
    holder['state'], metrics = compiled(holder['state'], batch, *extra)
    return metrics

  timer = TrainStepTimer(name=name, batch_size=batch_size, num_seeds=num_seeds,
                         compute_dtype=str(config_lib.compute_dtype(config)), compile_s=compile_s,
                         devices=mesh.size, _step=step,
                         _wait_each_step=cpu_devices.wait_for_each_step(mesh), _compiled=compiled)
  timer.time(1)  # Warm-up.
  timer.seconds.clear()
  return timer


def time_models(timers: list[TrainStepTimer], steps: int, repeats: int) -> None:
  """Times every timer `repeats` times, in turn (one run of each, then again): the machine's
  slow and fast minutes fall on all of them alike, so their ratios hold within one benchmark."""
  for timer in timers:
    timer.time(steps)  # Warm-up at full length.
    timer.seconds.clear()
  for _ in range(repeats):
    for timer in timers:
      timer.time(steps)


def step_flops(name: str, batch_size: int | None) -> float:
  """Useful FLOPs of one replica's train step of model `name` (see _step_flops)."""
  config = config_lib.load_config(name)
  return _step_flops(config, batch_size or config.batch_size)


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
  """CelebA's pipeline on a synthetic release in the official layout
  (gan_aec.data.celeb_a_synthetic), imported like the real files: the first pass (read, decode the
  crop, resize, write the uint8 cache) and then batches from the cache (the steady state of every
  later epoch and run)."""
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
