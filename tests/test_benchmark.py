"""The benchmark runs and reports what it promises (no timing is asserted)."""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

pytestmark = pytest.mark.slow  # The benchmark in a subprocess.

REPO = str(helpers.REPO)


def test_benchmark_json_smoke():
  result = subprocess.run(
      [sys.executable, '-m', 'gan_aec.benchmark', '--model=autoencoder', '--batch_size=8',
       '--steps=2', '--repeats=1', '--json', '--celeb_a_images=20', '--num_seeds=1,2',
       '--profile'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
  model, two, *pipelines = records
  assert model['model'] == 'autoencoder' and model['batch_size'] == 8
  assert (model['num_seeds'], two['num_seeds']) == (1, 2)
  # --profile: the step's time by kind of op, from XLA:CPU's op trace.
  kinds = {row['kind']: row for row in two['profile']}
  assert kinds['total']['ms_per_step'] > 0 and kinds['total']['ops_per_step'] > 10
  assert kinds['convolution']['ops_per_step'] > 0 and 'convolution, grouped' not in kinds
  for key in ('images_per_s', 'gflops_per_s', 'percent_of_ceiling', 'compile_s'):
    assert model[key] > 0, key
  # 8 images x ~8.9 MFLOP of useful training work each (forward + backward), by XLA's count.
  assert 0.03 < model['gflops_per_step'] < 0.15
  assert [p['pipeline'].split()[0] for p in pipelines] == ['mnist', 'celeb_a', 'celeb_a']
  assert 'first pass' in pipelines[1]['pipeline'] and 'from the cache' in pipelines[2]['pipeline']
  assert all(p['images_per_s'] > 0 for p in pipelines)


@pytest.mark.parametrize('flag', ['--num_seeds=1,a', '--model=vea', '--batch_size=0'])
def test_a_bad_flag_says_what_is_wrong_without_a_traceback(flag):
  result = subprocess.run([sys.executable, '-m', 'gan_aec.benchmark', flag, '--steps=1'],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert any(flag.split('=')[1] in line and any(
      why in line for why in ('Flags parsing error', 'Unknown', 'give positive integers'))
             for line in result.stderr.splitlines()), result.stderr[-3000:]
