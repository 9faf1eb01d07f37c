"""A workdir in a bucket (gs://): trained into, stopped by SIGTERM, resumed from the bucket, equal
to a local run, with nothing written locally. Against a local Cloud Storage emulator
(gcp-storage-emulator, on 127.0.0.1 only); the run reaches it through etils.epath (gcsfs) and
orbax's tensorstore, which both take the emulator's address from the environment."""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests import helpers

pytestmark = pytest.mark.slow  # An emulator, and training processes stopped and resumed.

REPO = str(helpers.REPO)
BUCKET = 'runs'


# The emulator, with one gap of it filled: Cloud Storage sends an object's generation with its
# content (x-goog-generation), which tensorstore's conditional writes of an orbax (OCDBT) manifest
# need after reading it; the emulator leaves the header out, and the second save of a run failed
# with 'Malformed StorageGeneration'.
EMULATOR = '''
import sys
from gcp_storage_emulator.handlers import objects
_download = objects.download
def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
  except Exception:  # Not found: the response already says so.
    return
  response['x-goog-generation'] = str(obj['generation'])
  response['x-goog-metageneration'] = str(obj['metageneration'])
objects.download = download
from gcp_storage_emulator.__main__ import main
main(sys.argv[1:])
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def emulator():
  """The emulator's URL, with the bucket created; stopped after the module's tests."""
  if importlib.util.find_spec('gcp_storage_emulator') is None:
    pytest.skip('gcp-storage-emulator is not installed (pip install -e ".[test]")')
  port = _free_port()
  process = subprocess.Popen(
      [sys.executable, '-c', EMULATOR, 'start', '--host=127.0.0.1', f'--port={port}', '--in-memory',
       f'--default-bucket={BUCKET}', '--quiet'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f'http://127.0.0.1:{port}'
  for _ in range(100):
    try:
      urllib.request.urlopen(f'{url}/storage/v1/b/{BUCKET}', timeout=1)
      break
    except OSError:
      time.sleep(0.1)
  yield url
  process.terminate()
  process.wait(timeout=30)


def bucket_env(url: str) -> dict:
  return {'STORAGE_EMULATOR_HOST': url,  # gcsfs (etils.epath's gs:// backend).
          'TENSORSTORE_GCS_HTTP_URL': url,  # Orbax's tensorstore.
          'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',  # tensorstore: no real credentials.
          # One request at a time: the emulator mishandles concurrent conditional writes to one
          # object (orbax's OCDBT manifest), which Cloud Storage itself serialises.
          'TENSORSTORE_GCS_REQUEST_CONCURRENCY': '1',
          'EPATH_USE_TF': 'false'}  # etils.epath through gcsfs, not TensorFlow's GCS client.


def main_command(workdir: str, steps: int) -> list[str]:
  return [sys.executable, '-m', 'gan_aec.main', '--config=autoencoder:smoke',
          f'--workdir={workdir}',
          '--config.dataset.download=False', f'--config.num_train_steps={steps}',
          '--config.checkpoint_every_steps=5', '--config.eval_every_steps=20',
          '--config.log_every_steps=5']


def test_a_run_in_a_bucket_stops_resumes_and_equals_a_local_run(emulator, tmp_path, monkeypatch):
  env_vars = bucket_env(emulator)
  for key, value in env_vars.items():
    monkeypatch.setenv(key, value)  # This process reads the bucket too.
  from etils import epath  # pylint: disable=g-import-not-at-top
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  env = {**os.environ, **env_vars, 'TF_CPP_MIN_LOG_LEVEL': '2',
         'PYTHONPATH': os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')])}
  remote = f'gs://{BUCKET}/autoencoder'

  process = subprocess.Popen(main_command(remote, 40), cwd=cwd, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  checkpoints = epath.Path(remote) / 'checkpoints'
  deadline = time.time() + 600
  while time.time() < deadline and process.poll() is None:
    if checkpoints.exists() and any(p.name.isdigit() for p in checkpoints.iterdir()):
      break
    time.sleep(0.5)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=600)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert 'Stopped by SIGTERM' in stderr

  resumed = subprocess.run(main_command(remote, 40), cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=900, check=False)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resumed from' in resumed.stderr

  names = {p.name for p in epath.Path(remote).iterdir()}
  assert {'config.json', 'metrics.jsonl', 'checkpoints', 'figures'} <= names
  assert any(n.startswith('events.out.tfevents') for n in names)
  assert (epath.Path(remote) / 'figures' / 'reconstructions.png').exists()
  assert os.listdir(cwd) == []  # Nothing written locally, no folder named 'gs:'.

  local = str(tmp_path / 'local')
  whole = subprocess.run(main_command(local, 40), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
  assert whole.returncode == 0, whole.stderr[-3000:]
  helpers.assert_same_run(remote, local)
