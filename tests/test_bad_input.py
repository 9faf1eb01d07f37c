"""Every bad input of the table in docs/running.md, run as the table writes it: the outcome it
names, one `error:` line and no traceback, and nothing else changed (the workdir, the data)."""

import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from gan_aec import data as datasets
from gan_aec.run import config as config_lib, loop

pytestmark = pytest.mark.slow  # A process per row.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = '| bad input | command | given | outcome |'


def table_rows() -> list[dict[str, str]]:
  """The rows of the bad-input table in docs/running.md."""
  with open(os.path.join(REPO, 'docs', 'running.md'), encoding='utf-8') as f:
    lines = f.read().splitlines()
  start = lines.index(HEADER) + 2
  rows = []
  for line in lines[start:]:
    if not line.startswith('|'):
      break
    what, command, given, outcome = [c.strip() for c in line.strip().strip('|').split('|')]
    rows.append({'what': what, 'command': command.strip('`'), 'given': given,
                 'outcome': outcome})
  return rows


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """RUN: configs/vae.py:smoke for 4 steps (checkpoints 2 and 4), no feature network."""
  workdir = str(tmp_path_factory.mktemp('finished') / 'run')
  config = config_lib.load_config('vae', 'smoke')
  config.sample_metrics.extractor = None
  loop.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  return workdir


def _overwrite_bytes(path: str) -> None:
  """Up to 64 bytes from the middle of the file at `path`, or of a checkpoint's largest array data
  file."""
  if os.path.isdir(path):
    files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names
             if os.sep + 'd' + os.sep in os.path.join(d, f)]
    path = max(files, key=os.path.getsize)
  data = bytearray(open(path, 'rb').read())
  rng = random.Random(0)
  for i in range(len(data) // 2, min(len(data), len(data) // 2 + 64)):
    data[i] = rng.randrange(256)
  with open(path, 'wb') as f:
    f.write(data)


def _prepare(given: str, run: str) -> None:
  """Applies the table's `given` column to the copy of RUN at `run`."""
  for part in [p.strip() for p in given.split(',')[1:]]:
    if part == 'config.json cut short':
      path = os.path.join(run, 'config.json')
      text = open(path, encoding='utf-8').read()
      open(path, 'w', encoding='utf-8').write(text[:len(text) // 2])
    elif part == 'metrics.jsonl cut short':
      path = os.path.join(run, 'metrics.jsonl')
      text = open(path, encoding='utf-8').read()
      open(path, 'w', encoding='utf-8').write(text[:-20])
    elif (match := re.fullmatch(r'checkpoint (\d+) deleted', part)):
      shutil.rmtree(os.path.join(run, 'checkpoints', match.group(1)))
    elif (match := re.fullmatch(r'bytes of checkpoint (\d+) overwritten', part)):
      _overwrite_bytes(os.path.join(run, 'checkpoints', match.group(1)))
    elif (match := re.fullmatch(r'state folder of checkpoint (\d+) deleted', part)):
      shutil.rmtree(os.path.join(run, 'checkpoints', match.group(1), 'default'))
    elif (match := re.fullmatch(r'manifest of checkpoint (\d+) overwritten', part)):
      _overwrite_bytes(os.path.join(run, 'checkpoints', match.group(1), 'default',
                                    'manifest.ocdbt'))
    else:
      raise ValueError(f'No such given in the table: {part!r}')


def _snapshot(folder: str) -> dict[str, tuple[int, int]]:
  if not os.path.exists(folder):
    return {}
  return {os.path.relpath(os.path.join(d, f), folder): (os.path.getsize(os.path.join(d, f)),
                                                        os.stat(os.path.join(d, f)).st_mtime_ns)
          for d, _, names in os.walk(folder) for f in names}


@pytest.mark.parametrize('row', table_rows(), ids=lambda row: row['what'].replace(' ', '_'))
def test_bad_input(row, finished_run, tmp_path):
  run = str(tmp_path / 'run')
  if row['given']:
    shutil.copytree(finished_run, run)
    _prepare(row['given'], run)
  workdir, a_file = str(tmp_path / 'workdir'), tmp_path / 'a_file'
  a_file.write_text('not a folder', encoding='utf-8')
  names = {'WORKDIR': workdir, 'RUN': run, 'FILE': str(a_file), 'TMP': str(tmp_path)}

  def fill(text):
    return re.sub(r'\b(WORKDIR|RUN|FILE|TMP)\b', lambda m: names[m.group(1)], text)
  # A data dir of its own (the other test worker writes feature caches into the shared one).
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(os.environ['TFDS_DATA_DIR'], data_dir)
  before = {'run': _snapshot(run), 'data': _snapshot(data_dir)}
  result = subprocess.run([sys.executable, '-m', *fill(row['command']).split()], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
                               'TFDS_DATA_DIR': data_dir})
  kind, _, expected = row['outcome'].partition(': ')
  expected = fill(expected)
  assert 'Traceback' not in result.stderr and 'Exception ignored' not in result.stderr, (
      result.stderr[-3000:])
  if kind == 'error':
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
    assert expected in errors[0], errors[0]
    assert _snapshot(run) == before['run']  # The run given is as it was...
    if 'Non-finite' not in expected:  # ... and a new one was not started (nothing written),
      assert not os.path.exists(workdir)  # except a run that trained until it diverged.
  else:  # It trains (a new run), resumes RUN, or finds RUN finished: and says the line.
    assert kind in ('trains', 'resumes', 'does nothing') and result.returncode == 0, (
        result.stderr[-3000:])
    assert expected in result.stderr, result.stderr[-3000:]
    trained = run if row['given'] else workdir
    records = [json.loads(line) for line in open(os.path.join(trained, 'metrics.jsonl'),
                                                  encoding='utf-8')]  # Every line is whole...
    steps = re.search(r'num_train_steps=(\d+)', row['command'])
    assert records[-1]['step'] == (int(steps.group(1)) if steps else 4)  # ... and it finished.
    if 'extractor=None' in row['command']:  # No sample metrics, no best checkpoint.
      assert not any('eval_fid' in r for r in records)
      assert not os.path.exists(os.path.join(trained, 'best_checkpoint'))
    return  # (A run that trains may cache the real images' features in the data dir.)
  after = _snapshot(data_dir)
  if 'Non-finite' in expected:  # It trained until it diverged: it may have cached features
    # (and the copied data dir may already hold some, from other tests).
    after, before['data'] = ({k: v for k, v in snap.items()
                              if not k.startswith(datasets.CACHE_FOLDER)}
                             for snap in (after, before['data']))
  assert after == before['data']


def test_the_table_covers_every_kind_of_user_error():
  """Each UserError subclass a run can raise appears in at least one row's outcome."""
  outcomes = ' '.join(row['outcome'] for row in table_rows())
  for needle in ('No config file', 'has no field', 'not a valid', 'must be a positive integer',
                 'holds no TFDS', 'Cannot write to the workdir', 'holds a run with a different',
                 'no earlier checkpoint', 'Non-finite', 'not a classifier run', 'resuming from'):
    assert needle in outcomes, needle
