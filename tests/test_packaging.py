"""The wheel: what it holds, and that an install of it works outside the repository."""

import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests import helpers

pytestmark = pytest.mark.slow  # Builds the wheel and runs it in a new environment.

REPO = helpers.REPO


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp('dist')
  # --no-isolation: the build uses this environment's setuptools (no download).
  result = subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation',
                           '--outdir', str(out), str(REPO)], capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  wheels = list(out.glob('gan_aec-*.whl'))
  assert len(wheels) == 1
  return wheels[0]


def test_the_wheel_holds_the_package_configs_and_digits_and_nothing_else(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  top = {name.split('/')[0] for name in names} - {'gan_aec'}
  assert len(top) == 1 and top.pop().endswith('.dist-info')  # Only the package and its metadata.
  for config in ('vae', 'dcgan', 'autoencoder', 'denoising_autoencoder', 'mnist_classifier'):
    assert f'gan_aec/configs/{config}.py' in names
  assert 'gan_aec/data/mnist_t10k/t10k-images-idx3-ubyte.gz' in names
  assert 'gan_aec/py.typed' in names
  assert not [n for n in names if n.startswith(('tests/', 'experiments/', 'pytorch_port/'))]
  for name in names:
    if name.endswith('.py'):
      assert 'import torch' not in zipfile.ZipFile(wheel).read(name).decode(), name
  metadata = zipfile.ZipFile(wheel).read(
      next(n for n in names if n.endswith('METADATA'))).decode()
  assert 'Provides-Extra: cuda12' in metadata and 'Provides-Extra: tpu' in metadata
  assert 'chex' not in metadata.split('Provides-Extra: test')[0]  # A test-only package.


def test_an_installed_wheel_trains_and_benchmarks_outside_the_repository(wheel, tmp_path):
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
  python = venv / 'bin' / 'python'
  # The dependencies come from this environment (a .pth file), so that the test needs no
  # download; gan_aec itself only from the wheel, installed without its source tree.
  site = subprocess.run([str(python), '-c',
                         'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                        capture_output=True, text=True, check=True).stdout.strip()
  pathlib.Path(site, 'dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n',
                                                     encoding='utf-8')
  subprocess.run([str(python), '-m', 'pip', 'install', '--quiet', '--no-deps', '--no-index',
                  str(wheel)], check=True)
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  where = subprocess.run([str(python), '-c', 'import gan_aec; print(gan_aec.__file__)'],
                         cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
  assert where.stdout.strip().startswith(site), where.stdout  # Not the checkout's copy.
  train = subprocess.run(
      [str(python), '-m', 'gan_aec.main', '--config=vae:smoke', '--workdir=run',
       '--config.dataset.download=False'],
      cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900, check=False)
  assert train.returncode == 0, train.stderr[-3000:]
  assert (elsewhere / 'run' / 'figures' / 'manifold.png').exists()
  bench = subprocess.run(
      [str(python), '-m', 'gan_aec.benchmark', '--model=vae', '--steps=2', '--repeats=1',
       '--celeb_a_images=20'], cwd=elsewhere, env=env, capture_output=True, text=True,
      timeout=900, check=False)
  assert bench.returncode == 0, bench.stderr[-3000:]
  assert 'vae' in bench.stdout and 'images/s' in bench.stdout
