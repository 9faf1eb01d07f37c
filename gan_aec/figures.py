"""PNG figures written into a run's `figures/` folder (matplotlib, no display needed).

Figures are drawn on `matplotlib.figure.Figure` objects and written by the Agg renderer, never
through pyplot: importing this module leaves matplotlib's backend and pyplot's state alone (a
notebook that imports gan_aec keeps showing its own plots), and nothing is left open.
"""

from __future__ import annotations

import io
from typing import Sequence

from etils import epath
from matplotlib import figure as mpl_figure
import numpy as np


def _save(fig, path: str) -> str:
  """Writes the figure as a PNG at `path` (a local path, or gs:// / s3:// through etils.epath)."""
  fig.tight_layout()
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=100)
  target.write_bytes(buffer.getvalue())
  return path


def _axes(figsize: tuple[float, float]):
  """A new figure of `figsize` inches and its one set of axes."""
  fig = mpl_figure.Figure(figsize=figsize)
  return fig, fig.subplots()


def _as_display(image_HWC: np.ndarray) -> tuple[np.ndarray, str | None]:
  image = np.clip(np.asarray(image_HWC, np.float32), 0.0, 1.0)
  if image.shape[-1] == 1:
    return image[..., 0], 'gray'
  return image, None


def save_image_rows(path: str, rows: Sequence[np.ndarray], row_titles: Sequence[str],
                    title: str | None = None) -> str:
  """Saves rows of images side by side, one titled row per array.

  The images are tiled into one canvas (white lines between them) drawn on one set of axes, so
  the cost stays a fraction of a second however many rows there are (a progress strip gains a
  row at every sample step).

  Args:
    path: the PNG to write (folders are created).
    rows: arrays [N, H, W, C] with values in [0, 1], all with the same N.
    row_titles: a label for each row, shown on its left.
    title: optional figure title.

  Returns:
    The path written.
  """
  rows = [np.clip(np.asarray(row, np.float32), 0.0, 1.0) for row in rows]
  num_rows, (num_cols, height, width, channels) = len(rows), rows[0].shape
  gap = max(1, height // 14)  # 2 pixels between 28-pixel digits.
  canvas = np.ones((num_rows * (height + gap) - gap, num_cols * (width + gap) - gap, channels),
                   np.float32)
  for r, row in enumerate(rows):
    for c, image in enumerate(row):
      top, left = r * (height + gap), c * (width + gap)
      canvas[top:top + height, left:left + width] = image
  image, cmap = _as_display(canvas)
  fig, ax = _axes((num_cols * 0.9 + 1.2, num_rows * 0.95 + 0.4))
  ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([r * (height + gap) + (height - 1) / 2 for r in range(num_rows)],
                labels=list(row_titles), fontsize=9)
  ax.tick_params(left=False)
  for spine in ax.spines.values():
    spine.set_visible(False)
  if title:
    ax.set_title(title, fontsize=10)
  return _save(fig, path)


def tile(images: np.ndarray, num_cols: int) -> np.ndarray:
  """[N, H, W, C] -> one image [rows * H, num_cols * W, C] (missing cells black)."""
  n, h, w, c = images.shape
  num_rows = -(-n // num_cols)
  canvas = np.zeros((num_rows * h, num_cols * w, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, num_cols)
    canvas[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
  return canvas


def save_image_grid(path: str, images: np.ndarray, num_cols: int, title: str | None = None,
                    xlabel: str | None = None, ylabel: str | None = None) -> str:
  """Saves [N, H, W, C] images in [0, 1] as one tiled grid; returns the path."""
  canvas, cmap = _as_display(tile(np.asarray(images, np.float32), num_cols))
  height, width = canvas.shape[:2]
  fig, ax = _axes((max(3.0, width / 60), max(3.0, height / 60) + 0.4))
  ax.imshow(canvas, cmap=cmap, vmin=0.0, vmax=1.0, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])
  if xlabel:
    ax.set_xlabel(xlabel)
  if ylabel:
    ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, fontsize=10)
  return _save(fig, path)


def save_scatter(path: str, points: np.ndarray, labels: np.ndarray | None, title: str,
                 xlabel: str, ylabel: str) -> str:
  """Scatter of points [N, 2] coloured by integer labels [N] (0..9) with a colour bar, or in one
  colour when labels is None (a dataset without classes)."""
  fig, ax = _axes((6.4, 5.4))
  if labels is None:
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5)
  else:
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='tab10', s=4, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), label='digit')
  ax.set_title(title, fontsize=10)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  return _save(fig, path)


def save_confusion_matrix(path: str, confusion: np.ndarray, title: str) -> str:
  """A [K, K] count matrix (rows: true class, columns: predicted) with the counts written in."""
  k = confusion.shape[0]
  fig, ax = _axes((6.0, 5.4))
  ax.imshow(np.log1p(confusion), cmap='Blues')
  for (i, j), count in np.ndenumerate(confusion):
    if count:
      ax.text(j, i, str(count), ha='center', va='center', fontsize=7,
              color='white' if i == j else 'black')
  ax.set_xticks(range(k))
  ax.set_yticks(range(k))
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title, fontsize=10)
  return _save(fig, path)
