"""TensorBoard event files written through etils.epath, so a workdir may be a bucket (gs://, s3://).

TensorFlow's own summary writer reaches object stores through TensorFlow's file systems, whose
Cloud Storage endpoint is fixed and which has no S3 any more; this writer goes through the same
path layer as the rest of the run. It writes what TensorBoard reads: scalars, PNG images and the
config as hyperparameters, one `Event` protocol buffer per step in TFRecord framing (the
`tensorboard` package's record writer). Only the writing process (process 0) creates one.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Mapping

from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.summary.writer import record_writer


class EventWriter:
  """Appends events to a new `events.out.tfevents.*` file in `logdir` (one per run start)."""

  def __init__(self, logdir: str):
    directory = epath.Path(logdir)
    directory.mkdir(parents=True, exist_ok=True)
    # TensorBoard reads a folder's event files in name order: the time, to the microsecond,
    # orders them even when one process starts two writers within a second.
    name = f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.v2'
    self.path = directory / name
    self._file = self.path.open('wb')
    self._records = record_writer.RecordWriter(self._file)
    self._write(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def _write_summary(self, step: int, summary: summary_pb2.Summary) -> None:
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_restart(self, step: int) -> None:
    """Marks a resume: TensorBoard drops what earlier files logged at `step` and later (the
    steps a crashed run logged past its last checkpoint, which the resumed run logs again)."""
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._write_summary(step, summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=name, simple_value=float(value))
        for name, value in scalars.items()]))

  def write_png(self, step: int, name: str, png: bytes, height: int, width: int,
                channels: int) -> None:
    """One PNG-encoded image, shown under `name` in TensorBoard's images tab."""
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=channels,
                                      encoded_image_string=png)
    self._write_summary(step, summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=name, image=image)]))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Hyperparameters (bool, int, float or str values) for TensorBoard's HParams tab."""
    self._write_summary(0, hparams_summary.hparams_pb(dict(hparams)))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    self._records.close()
