"""A run's identity in its workdir (gan_aec.run.workdir): config.json and the resume check."""

import collections
import json
import os

import pytest

from gan_aec import errors
from gan_aec.run import config as config_lib, workdir


def test_config_json_round_trip_and_no_temporary_file_left(tmp_path):
  config = config_lib.load_config('vae', 'smoke')
  assert workdir.saved_config(str(tmp_path)) is None
  workdir.write_config(config, str(tmp_path))
  assert os.listdir(tmp_path) == [workdir.CONFIG_FILE]
  saved = workdir.saved_config(str(tmp_path))
  assert saved['model'] == 'vae' and saved['batch_size'] == config.batch_size
  assert not workdir.differences(saved, config)


def test_an_unreadable_config_json_is_a_user_error_naming_it(tmp_path):
  (tmp_path / workdir.CONFIG_FILE).write_text('{"model": "va', encoding='utf-8')
  with pytest.raises(errors.WorkdirMismatchError, match='config.json is unreadable'):
    workdir.saved_config(str(tmp_path))


def test_only_fields_that_define_the_experiment_count_as_differences():
  config = config_lib.load_config('autoencoder', 'smoke')
  saved = json.loads(config.to_json_best_effort())
  config.num_train_steps = 99  # How long: resumable.
  config.dataset.data_dir = '/elsewhere'  # Where the same data lies: resumable.
  config.microbatch_size = 4  # The same gradient in pieces: resumable.
  assert not workdir.differences(saved, config)
  config.learning_rate = 0.5
  config.seed = 7
  assert workdir.differences(saved, config) == {'learning_rate': (0.001, 0.5), 'seed': (0, 7)}


def test_resume_check_refuses_another_experiment_unless_allowed(tmp_path):
  config = config_lib.load_config('autoencoder', 'smoke')
  saved = json.loads(config.to_json_best_effort())
  assert workdir.check_resume(config, str(tmp_path), None) == {}
  config.batch_size = 16
  with pytest.raises(errors.WorkdirMismatchError, match=r'batch_size: 8 in the workdir, 16 now'):
    workdir.check_resume(config, str(tmp_path), saved)
  config.allow_config_change = True
  assert workdir.check_resume(config, str(tmp_path), saved) == {'batch_size': (8, 16)}


def test_a_workdir_trained_on_other_data_is_refused(tmp_path):
  config = config_lib.load_config('autoencoder', 'smoke')
  saved = {'dataset': {'source': 'bundled_mnist_t10k'}}
  workdir.check_data_source(config, str(tmp_path), saved, 'bundled_mnist_t10k')  # Same: fine.
  with pytest.raises(errors.WorkdirMismatchError, match="trained on dataset.source='bundled"):
    workdir.check_data_source(config, str(tmp_path), saved, 'tfds')
  config.allow_config_change = True
  workdir.check_data_source(config, str(tmp_path), saved, 'tfds')


def test_an_unwritable_or_full_workdir_is_refused_before_training(tmp_path, monkeypatch):
  (tmp_path / 'a_file').write_text('not a folder', encoding='utf-8')
  with pytest.raises(errors.WorkdirUnusableError, match='Cannot write to the workdir'):
    workdir.check_usable(str(tmp_path / 'a_file' / 'run'), checkpoint_bytes=1000)
  before = sorted(os.listdir(tmp_path))
  workdir.check_usable(str(tmp_path / 'run' / 'deeper'), checkpoint_bytes=1000)
  assert sorted(os.listdir(tmp_path)) == before  # Nothing created, the probe file is gone.
  (tmp_path / 'run').mkdir()
  workdir.check_usable(str(tmp_path / 'run'), checkpoint_bytes=1000)
  assert os.listdir(tmp_path / 'run') == []
  monkeypatch.setattr(workdir.shutil, 'disk_usage',
                      lambda path: collections.namedtuple('Usage', 'total used free')(1, 1, 2**20))
  with pytest.raises(errors.WorkdirUnusableError, match='has 1 MB free; this run needs about'):
    workdir.check_usable(str(tmp_path / 'run'), checkpoint_bytes=10 * 2**20)


def test_the_loop_checks_the_workdir_before_it_trains(tmp_path):
  from gan_aec.run import loop  # pylint: disable=g-import-not-at-top
  (tmp_path / 'a_file').write_text('not a folder', encoding='utf-8')
  config = config_lib.load_config('autoencoder', 'smoke')
  config.dataset.download = False
  with pytest.raises(errors.WorkdirUnusableError, match='Choose a --workdir'):
    loop.train_and_evaluate(config, str(tmp_path / 'a_file' / 'run'))
