"""Metrics to TensorBoard (clu) and to `WORKDIR/metrics.jsonl`, plus steps/s, images/s and ETA.

`metrics.jsonl` holds one JSON object per line: a `run_start` record each time the run starts or
resumes (model, dataset source, devices), then `{"step": s, "wall_time": t, name: value, ...}`
records (t in seconds since the Unix epoch); evaluation values are prefixed `eval_`. TensorBoard
gets the same scalars, the run's figures as images after each evaluation, and the config as
hyperparameters. Only process 0 writes files.

On a resume from step s, records of steps after s (written before a crash, by steps the resumed run
repeats) are dropped first, as is a line cut short by a kill, so the file reads as if the run had
never stopped. A start from step 0 in a workdir that already has records (an attempt killed before
its first checkpoint) drops every step record, keeping the `run_start` history.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from typing import Any, Mapping

from absl import logging
from clu import metric_writers
import numpy as np


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)):
    value = value.item() if np.ndim(value) == 0 else np.asarray(value).tolist()
  return value


def read_records(workdir: str) -> list[dict[str, Any]]:
  """WORKDIR/metrics.jsonl as a list of records ([] without the file); a line cut short by a kill
  is skipped."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except ValueError:
        continue
  return records


class MetricLogger:
  """Writes scalar metrics to TensorBoard and metrics.jsonl (only when `is_writer`)."""

  def __init__(self, workdir: str, *, is_writer: bool = True, resume_step: int | None = None):
    self.is_writer = is_writer
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    if is_writer and resume_step is not None and os.path.exists(self.jsonl_path):
      self._drop_records_after(resume_step)
    # TensorBoard events on process 0 only; progress lines are logged by log_progress instead.
    self._writer = (metric_writers.SummaryWriter(workdir) if is_writer
                    else metric_writers.MultiWriter([]))

  def _drop_records_after(self, step: int) -> None:
    kept, dropped = [], 0
    with open(self.jsonl_path, encoding='utf-8') as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:  # A line cut short by a kill.
          dropped += 1
          continue
        if 'event' in record or (step > 0 and record.get('step', 0) <= step):
          kept.append(line if line.endswith('\n') else line + '\n')
        else:
          dropped += 1
    if dropped:
      logging.info('metrics.jsonl: dropped %d records after step %d (repeated by this resume).',
                   dropped, step)
      with open(self.jsonl_path + '.tmp', 'w', encoding='utf-8') as f:
        f.writelines(kept)
      os.replace(self.jsonl_path + '.tmp', self.jsonl_path)

  def _append(self, record: Mapping[str, Any]) -> None:
    if self.is_writer:
      with open(self.jsonl_path, 'a', encoding='utf-8') as f:
        f.write(json.dumps({k: _plain(v) for k, v in record.items()}) + '\n')

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The run's config as TensorBoard hyperparameters (nested fields as dotted names)."""
    flat = {}

    def flatten(prefix, value):
      if isinstance(value, Mapping):
        for key, item in value.items():
          flatten(f'{prefix}{key}.', item)
      else:
        flat[prefix[:-1]] = value if isinstance(value, (bool, int, float, str)) else str(value)
    flatten('', hparams)
    self._writer.write_hparams(flat)

  def write_images(self, step: int, paths: list[str], prefix: str = '') -> None:
    """PNG figures as TensorBoard images, named after their files (a per-step file
    `samples_step000100.png` shows as `samples`)."""
    if not self.is_writer or not paths:
      return
    import matplotlib.image  # pylint: disable=g-import-not-at-top
    images = {}
    for path in paths:
      name = re.sub(r'_step\d+$', '', os.path.splitext(os.path.basename(path))[0])
      pixels = matplotlib.image.imread(path)  # float [H, W, 3 or 4] in [0, 1]
      images[f'{prefix}{name}'] = (np.clip(pixels[..., :3], 0, 1) * 255).astype(np.uint8)[None]
    self._writer.write_images(step, images)

  def write_run_start(self, step: int, info: Mapping[str, Any]) -> None:
    self._append({'event': 'run_start', 'step': step, **info})

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """One record; a list value (a metric per replica, `<name>_per_replica`) goes into
    metrics.jsonl as a list and to TensorBoard as one scalar per replica (`<name>/<r>`)."""
    record, board = {}, {}
    for name, value in scalars.items():
      value = _plain(value)
      if isinstance(value, (list, tuple)):
        record[name] = [float(v) for v in value]
        board.update({f'{name}/{r:02d}': float(v) for r, v in enumerate(value)})
      else:
        record[name] = board[name] = float(value)
    self._append({'step': step, 'wall_time': round(time.time(), 3), **record})
    self._writer.write_scalars(step, board)

  def close(self) -> None:
    self._writer.flush()
    self._writer.close()


class Progress:
  """Training throughput between two calls, without the time spent in `excluded()` blocks
  (evaluations, figures, checkpoints), and the time left to `total_steps`.

  (clu's periodic_actions.ReportProgress reports steps/s over wall time, evaluations included,
  and breaks the wall time down by its `timed` parts; this measures the steps alone.)
  """

  def __init__(self, start_step: int, total_steps: int, batch_size: int):
    self.total_steps, self.batch_size = total_steps, batch_size
    self._last_step, self._last_time = start_step, time.perf_counter()
    self._excluded = 0.0

  @contextlib.contextmanager
  def excluded(self):
    """Time spent in this block does not count as training time."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self._excluded += time.perf_counter() - start

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    steps, seconds = step - self._last_step, now - self._last_time - self._excluded
    self._last_step, self._last_time, self._excluded = step, now, 0.0
    steps_per_s = steps / seconds if seconds > 0 else math.nan
    return {'steps_per_s': steps_per_s, 'images_per_s': steps_per_s * self.batch_size,
            'eta_s': (self.total_steps - step) / steps_per_s if steps_per_s > 0 else math.nan}


def format_eta(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def log_progress(step: int, total: int, train_metrics: Mapping[str, float],
                 progress: Mapping[str, float]) -> None:
  values = ' '.join(f'{k}={v:.4f}' for k, v in train_metrics.items())
  logging.info('step %d/%d %s | %.1f steps/s, %.0f images/s, ETA %s', step, total, values,
               progress['steps_per_s'], progress['images_per_s'], format_eta(progress['eta_s']))
