"""The families' Tasks: what the loop calls at every evaluation compiles once, not every time."""

import jax
from jax._src import dispatch
import numpy as np
import pytest

from gan_aec.data import mnist
from gan_aec.data.splits import Split
from gan_aec.run import config as config_lib, tasks, workdir as run_workdir


@pytest.fixture
def compiles():
  """A list that grows by one for every program JAX compiles (or loads from its cache)."""
  events = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == dispatch.BACKEND_COMPILE_EVENT:
      events.append(event)
  jax.monitoring.register_event_duration_secs_listener(listener)
  yield events
  jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize('name', ['autoencoder', 'vae', 'dcgan', 'mnist_classifier'])
@pytest.mark.slow
def test_an_evaluations_figures_and_samples_compile_only_the_first_time(name, tmp_path, compiles):
  config = config_lib.load_config(name, 'smoke')
  task = tasks.build_task(config)
  test = mnist.load_bundled().test
  test = Split(test.images[:40], test.labels[:40])
  size = config_lib.image_size(config)
  example = {'image': np.zeros((1, size, size, 1), np.float32), 'label': np.zeros(1, np.int32)}
  state = jax.device_get(jax.jit(task.create_state)(jax.random.key(0), example))
  files = run_workdir.Layout(str(tmp_path)).replica(0)

  def evaluate(step):
    drawing = task.drawing
    drawing.write_figures(state, test, files, step, final=True, seed=0)
    if drawing.write_samples:
      drawing.write_samples(state, files, step, seed=0)
    if drawing.sample_images:
      drawing.sample_images(state, jax.random.key(1), 30)
  evaluate(1)
  first = len(compiles)
  assert first > 0  # The listener sees compiles at all.
  evaluate(2)
  assert len(compiles) == first, f'{len(compiles) - first} compile(s) at the second evaluation'
