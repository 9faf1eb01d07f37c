"""One JAX CPU device per core, so that data-parallel training keeps every core busy.

XLA:CPU runs a small convolutional net's ops one after another, each too small to spread over
the cores; split into one device per core, each device trains on its shard of the batch at the
same time (measured on 2 cores: VAE 780 -> ~920 images/s, the autoencoders ~1.3x). The split is
JAX's `jax_num_cpu_devices` option, which must be set before JAX starts its CPU backend; the entry
points (gan_aec.main, gan_aec.benchmark, the experiments) call `split_for_configs` first.
Accelerators are unaffected: the flag only shapes the CPU platform.

Loops over jitted steps on several CPU devices of one process must wait for each step before
dispatching the next (`wait_for_each_step`): XLA:CPU runs their all-reduces as blocking waits on
its small thread pool, and a device that runs ahead into the next step can starve the others;
XLA then aborts the process after 40 s ("Termination timeout for all reduce"). Measured on 2
cores: 100 queued steps of a small 2-device data-parallel step abort every time, and so did the
smoke autoencoder's loop logging every 400 steps; waiting for each step, both run, and the VAE's
loop trains 812-854 images/s against 849-865 without the wait (within noise).
"""

from __future__ import annotations

import math
import os
import re

from absl import logging

FLAG = '--xla_force_host_platform_device_count'  # A user's own count (XLA_FLAGS) wins.


def available_cores() -> int:
  """Cores this process may run on (its CPU affinity; os.cpu_count() where that is unknown)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def fits(devices: int, batch_sizes: list[int], num_replicas: int = 1) -> bool:
  """Whether `devices` can train `num_replicas` replicas: replicas spread over gcd(replicas,
  devices) of them, and the rest split each replica's batches evenly (gan_aec.run.sharding)."""
  per_replica = devices // math.gcd(num_replicas, devices)
  return all(b % per_replica == 0 for b in batch_sizes)


def device_count_for(batch_sizes: list[int], cores: int | None = None,
                     num_replicas: int = 1) -> int:
  """The most devices, at most one per core, that fit the batch sizes and replicas (`fits`)."""
  cores = cores or available_cores()
  return max(n for n in range(1, cores + 1) if fits(n, batch_sizes, num_replicas))


def split_into_devices(batch_sizes: list[int], num_replicas: int = 1) -> int | None:
  """Asks JAX for one CPU device per core (as many as `fits` the batches and replicas), through
  its `jax_num_cpu_devices` option, which must be set before JAX starts its CPU backend.

  Returns the device count set, or None when nothing was changed: the user chose a count
  (XLA_FLAGS' --xla_force_host_platform_device_count, or JAX_NUM_CPU_DEVICES), or JAX's backends
  are already running (then the option can no longer take effect).
  """
  if re.search(FLAG + r'\b', os.environ.get('XLA_FLAGS', '')) or os.environ.get(
      'JAX_NUM_CPU_DEVICES'):
    return None
  cores = available_cores()
  count = device_count_for(batch_sizes, cores, num_replicas=num_replicas)
  if count < cores:
    logging.warning('The batch sizes %s do not split evenly over the %d CPU cores: training on %d '
                    'CPU device(s), which leaves %d core(s) less busy. A batch size divisible by '
                    '%d uses every core.', ', '.join(map(str, sorted(set(batch_sizes)))), cores,
                    count, cores - count, cores)
  if count > 1:
    import jax  # pylint: disable=g-import-not-at-top
    try:
      jax.config.update('jax_num_cpu_devices', count)
    except RuntimeError:  # Raised once a backend is initialised.
      logging.info('JAX is already running; its CPU devices stay as they are.')
      return None
  return count


def split_for_configs(configs: list) -> int | None:
  """`split_into_devices` for every config that trains data-parallel on CPU
  (`config.cpu_data_parallel`, default True; the DCGAN's is False: its BatchNorm and wide
  matmuls run faster as one device that uses all cores, so the loop gives it one device), or
  trains several replicas (gan_aec.run.replicas: they spread over devices, data-parallel or
  not)."""
  from gan_aec.run import config as config_lib  # pylint: disable=g-import-not-at-top
  counts = [config_lib.num_replicas(c) for c in configs]
  splitting = [(c, k) for c, k in zip(configs, counts) if c.get('cpu_data_parallel', True) or k > 1]
  if not splitting:
    return None
  sizes = [int(c[field]) for c, _ in splitting for field in ('batch_size', 'eval_batch_size')
           if field in c]
  num_replicas = math.lcm(*[k for _, k in splitting])
  return split_into_devices(sizes, num_replicas)


def wait_for_each_step(mesh) -> bool:
  """True when `mesh` splits a replica's batch over several CPU devices of this process (its
  `data` axis, over which the steps' all-reduces run): loops then block on each step's outputs
  before dispatching the next (see the module docstring for why). Replicas on their own devices
  share no collective, so their steps may queue."""
  import jax  # pylint: disable=g-import-not-at-top
  local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  return len(local) > 1 and local[0].platform == 'cpu' and dict(mesh.shape).get('data', 1) > 1
