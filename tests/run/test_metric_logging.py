"""metrics.jsonl and TensorBoard (gan_aec.run.metric_logging): records, resume, progress."""

import json
import os
import time

import numpy as np

from gan_aec.run import metric_logging
from gan_aec.run.workdir import Layout


def lines(workdir) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def test_records_go_to_jsonl_and_tensorboard(tmp_path):
  logger = metric_logging.MetricLogger(Layout(str(tmp_path)))
  logger.write_run_start(0, {'model': 'vae', 'devices': 2})
  logger.write_scalars(10, {'loss': np.float32(1.5), 'eval_psnr': 20})
  logger.close()
  records = lines(tmp_path)
  for record in records:
    assert abs(record.pop('wall_time') - time.time()) < 60  # Seconds since the epoch.
  assert records == [{'event': 'run_start', 'step': 0, 'model': 'vae', 'devices': 2},
                     {'step': 10, 'loss': 1.5, 'eval_psnr': 20.0}]
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(tmp_path))


def test_a_process_other_than_the_writer_writes_nothing(tmp_path):
  logger = metric_logging.MetricLogger(Layout(str(tmp_path)), is_writer=False)
  logger.write_scalars(1, {'loss': 1.0})
  logger.close()
  assert os.listdir(tmp_path) == []


def test_resume_drops_records_after_the_checkpoint_and_a_cut_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"event": "run_start", "step": 0}\n{"step": 10, "loss": 3}\n'
                  '{"step": 20, "loss": 2}\n{"step": 30, "lo', encoding='utf-8')
  assert [r['step'] for r in metric_logging.read_records(str(tmp_path))] == [0, 10, 20]
  metric_logging.MetricLogger(Layout(str(tmp_path)), resume_step=10).close()
  assert lines(tmp_path) == [{'event': 'run_start', 'step': 0}, {'step': 10, 'loss': 3}]
  # A restart from step 0 (killed before its first checkpoint): only run_start history stays.
  metric_logging.MetricLogger(Layout(str(tmp_path)), resume_step=0).close()
  assert lines(tmp_path) == [{'event': 'run_start', 'step': 0}]
  assert metric_logging.read_records(str(tmp_path / 'absent')) == []


def test_a_bucket_file_is_rewritten_at_flushes_not_at_every_record(tmp_path, monkeypatch):
  """Object stores cannot append: the whole file is written at flush (after each checkpoint),
  at close, and at most every REMOTE_REWRITE_SECONDS, not once per record."""
  monkeypatch.setattr(metric_logging.run_workdir, 'is_remote', lambda path: True)
  clock = [0.0]
  monkeypatch.setattr(metric_logging.time, 'monotonic', lambda: clock[0])
  logger = metric_logging.MetricLogger(Layout(str(tmp_path)))
  path = tmp_path / 'metrics.jsonl'
  for step in range(1, 101):
    logger.write_scalars(step, {'loss': 1.0})
  assert not path.exists()
  logger.flush()
  assert len(lines(tmp_path)) == 100
  logger.write_scalars(101, {'loss': 1.0})
  clock[0] = metric_logging.MetricLogger.REMOTE_REWRITE_SECONDS
  logger.write_scalars(102, {'loss': 1.0})  # A minute since the last rewrite.
  assert [r['step'] for r in lines(tmp_path)][-2:] == [101, 102]
  logger.write_scalars(103, {'loss': 1.0})
  assert len(lines(tmp_path)) == 102
  logger.close()
  assert [r['step'] for r in lines(tmp_path)] == list(range(1, 104))


def test_progress_rates_and_eta():
  progress = metric_logging.Progress(start_step=0, total_steps=100, batch_size=8)
  rates = progress.update(10)
  assert rates['steps_per_s'] > 0 and rates['images_per_s'] == 8 * rates['steps_per_s']
  assert np.isclose(rates['eta_s'], 90 / rates['steps_per_s'])
  assert metric_logging.format_eta(3725) == '1:02:05'
  assert metric_logging.format_eta(65) == '1:05'
  assert metric_logging.format_eta(float('nan')) == '?'


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path):
  """A run killed after logging step 30, whose last checkpoint was step 10, resumes there and
  logs steps 20 and 30 again: TensorBoard shows the resumed run's values, not both."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  first = metric_logging.MetricLogger(Layout(str(tmp_path)))
  for step in (10, 20, 30):
    first.write_scalars(step, {'loss': float(step)})
  first.close()
  resumed = metric_logging.MetricLogger(Layout(str(tmp_path)), resume_step=10)
  for step in (20, 30):
    resumed.write_scalars(step, {'loss': step + 0.5})
  resumed.close()
  events = event_accumulator.EventAccumulator(str(tmp_path))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars('loss')] == [(10, 10.0), (20, 20.5),
                                                                  (30, 30.5)]
