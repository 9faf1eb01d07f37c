"""Metrics to TensorBoard (gan_aec.run.tensorboard) and to `WORKDIR/metrics.jsonl`, plus steps/s,
images/s and ETA.

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
import io
import json
import math
import os
import re
import time
from typing import Any, Mapping

from absl import logging
from etils import epath
import numpy as np

from gan_aec.run import tensorboard
from gan_aec.run import workdir as run_workdir


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)):
    value = value.item() if np.ndim(value) == 0 else np.asarray(value).tolist()
  return value


def read_records(workdir: str) -> list[dict[str, Any]]:
  """WORKDIR/metrics.jsonl as a list of records ([] without the file); a line cut short by a kill
  is skipped."""
  path = epath.Path(run_workdir.Layout(workdir).metrics_file)
  if not path.exists():
    return []
  records = []
  for line in path.read_text(encoding='utf-8').splitlines():
    try:
      records.append(json.loads(line))
    except ValueError:
      continue
  return records


def drop_records_after(path: epath.Path, step: int | None) -> list[str]:
  """metrics.jsonl's lines without a line cut short by a kill and, when `step` is given, without
  the records past `step` (a resume from the checkpoint at `step` logs those steps again; step 0:
  a restart keeps only the run_start events). Rewrites the file whole (never half-written) when
  anything was dropped; returns the lines kept."""
  kept, dropped = [], 0
  for line in path.read_text(encoding='utf-8').splitlines():
    if not line:
      continue
    try:
      record = json.loads(line)
    except ValueError:  # A line cut short by a kill.
      dropped += 1
      continue
    if step is None or 'event' in record or (step > 0 and record.get('step', 0) <= step):
      kept.append(line + '\n')
    else:
      dropped += 1
  if dropped:
    logging.info('metrics.jsonl: dropped %d records (cut short, or after step %s, which this run '
                 'repeats).', dropped, step)
    run_workdir.write_whole(path, ''.join(kept))
  return kept


class MetricLogger:
  """Writes metrics to TensorBoard and metrics.jsonl, figures as TensorBoard images, the config
  as hyperparameters (all only when `is_writer`: process 0). Paths go through etils.epath, so the
  workdir may be a bucket: a local metrics.jsonl is appended to at each record; a remote one
  (object stores cannot append) is rewritten whole at `flush` (the loop calls it after each
  checkpoint, so the file holds every record up to the checkpoint a resume starts from), at
  `close`, and at most every REMOTE_REWRITE_SECONDS in between, instead of at every record
  (O(N^2) bytes for N records)."""

  REMOTE_REWRITE_SECONDS = 60.0

  def __init__(self, layout: run_workdir.Layout, *, is_writer: bool = True,
               resume_step: int | None = None):
    self.is_writer = is_writer
    self.jsonl_path = epath.Path(layout.metrics_file)
    self._lines: list[str] = []  # The file's content, kept for rewriting a remote file.
    self._unwritten = False  # Records in _lines not yet in a remote file.
    self._rewritten_at = time.monotonic()
    if is_writer and self.jsonl_path.exists():
      self._lines = drop_records_after(self.jsonl_path, resume_step)
    # TensorBoard events on process 0 only; progress lines are logged by log_progress instead.
    self._writer = tensorboard.EventWriter(layout.workdir) if is_writer else None
    if self._writer and resume_step:  # What an earlier attempt logged past the checkpoint goes.
      self._writer.write_restart(resume_step + 1)

  def flush(self) -> None:
    """Writes a remote metrics.jsonl's pending records (a local file has none)."""
    if self._unwritten:
      run_workdir.write_whole(self.jsonl_path, ''.join(self._lines))
      self._unwritten, self._rewritten_at = False, time.monotonic()

  def _append(self, record: Mapping[str, Any]) -> None:
    if not self.is_writer:
      return
    line = json.dumps({k: _plain(v) for k, v in record.items()}) + '\n'
    self._lines.append(line)
    if not run_workdir.is_remote(self.jsonl_path):
      with self.jsonl_path.open('a', encoding='utf-8') as f:
        f.write(line)
    else:
      self._unwritten = True
      if time.monotonic() - self._rewritten_at >= self.REMOTE_REWRITE_SECONDS:
        self.flush()

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The run's config as TensorBoard hyperparameters (nested fields as dotted names)."""
    if not self.is_writer:
      return
    flat = run_workdir.flatten(dict(hparams))
    self._writer.write_hparams({name: value if isinstance(value, (bool, int, float, str))
                                else str(value) for name, value in flat.items()})

  def write_images(self, step: int, paths: list[str], prefix: str = '') -> None:
    """PNG figures as TensorBoard images, named after their files (a per-step file
    `samples_step000100.png` shows as `samples`)."""
    if not self.is_writer or not paths:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top
    for path in paths:
      png = epath.Path(path).read_bytes()
      with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
        channels = len(image.getbands())
      name = re.sub(r'_step\d+$', '', os.path.splitext(os.path.basename(str(path)))[0])
      self._writer.write_png(step, f'{prefix}{name}', png, height, width, channels)
    self._writer.flush()

  def write_run_start(self, step: int, info: Mapping[str, Any]) -> None:
    self._append({'event': 'run_start', 'step': step, 'wall_time': round(time.time(), 3), **info})

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """One record; a list value (a metric per replica, `<name>_per_replica`) goes into
    metrics.jsonl as a list and to TensorBoard as one scalar per replica (`<name>/<r>`); a string
    (what a metric was measured with, e.g. `eval_extractor`) into metrics.jsonl only."""
    record, board = {}, {}
    for name, value in scalars.items():
      value = _plain(value)
      if isinstance(value, str):
        record[name] = value
      elif isinstance(value, (list, tuple)):
        record[name] = [float(v) for v in value]
        board.update({f'{name}/{r:02d}': float(v) for r, v in enumerate(value)})
      else:
        record[name] = board[name] = float(value)
    self._append({'step': step, 'wall_time': round(time.time(), 3), **record})
    if self._writer:
      self._writer.write_scalars(step, board)
      self._writer.flush()

  def close(self) -> None:
    self.flush()
    if self._writer:
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
