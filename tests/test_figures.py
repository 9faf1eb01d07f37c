"""The figures a run writes: what each PNG shows, where on the canvas."""

import os
import subprocess
import sys

import matplotlib.image
import numpy as np

from gan_aec import figures


def _gray(path):
  pixels = matplotlib.image.imread(path)  # [H, W, 4] floats in [0, 1].
  return pixels[..., :3].mean(-1)


def test_image_rows_show_each_row_in_order_with_its_title(tmp_path):
  # Forty rows, as a progress strip has after forty sample steps: black rows then gray rows.
  rows = [np.full((8, 28, 28, 1), 0.0 if r < 20 else 0.5, np.float32) for r in range(40)]
  path = figures.save_image_rows(str(tmp_path / 'a' / 'strip.png'), rows,
                                 [f'step {r}' for r in range(40)], title='The same noise')
  gray = _gray(path)
  height, width = gray.shape
  assert height > 40 * 28 and width > 8 * 28  # Every image at least at its own size.
  middle = gray[:, width // 2 - 20:width // 2 + 20]
  dark = np.flatnonzero(middle.mean(1) < 0.2)  # The black images' pixel rows.
  gray_rows = np.flatnonzero(np.abs(middle.mean(1) - 0.5) < 0.1)
  assert dark.size > 20 * 28 and gray_rows.size > 20 * 28
  assert dark.max() < gray_rows[gray_rows > dark.min()].min()  # In row order (below the title).
  # The colour rows: [N, H, W, 3] drawn as they are.
  red = np.zeros((1, 4, 16, 16, 3), np.float32)
  red[..., 0] = 1.0
  pixels = matplotlib.image.imread(figures.save_image_rows(str(tmp_path / 'red.png'), list(red),
                                                           ['red']))
  reddest = pixels[..., 0] - pixels[..., 1]
  assert reddest.max() > 0.9


def test_image_grid_tiles_the_images_row_by_row(tmp_path):
  images = np.zeros((16, 28, 28, 1), np.float32)
  images[:8] = 1.0  # The first row of an 8-column grid white, the second black.
  gray = _gray(figures.save_image_grid(str(tmp_path / 'grid.png'), images, 8, 'a grid'))
  column = gray[:, gray.shape[1] // 2]
  white, black = np.flatnonzero(column > 0.9), np.flatnonzero(column < 0.1)
  assert black.size and white.size and np.median(white) < np.median(black)


def test_drawing_leaves_matplotlib_backend_and_pyplot_alone(tmp_path):
  # A notebook's process: its own backend chosen; gan_aec imported, a figure written.
  script = ('import sys, matplotlib, numpy as np\n'
            'from gan_aec import figures\n'
            f'figures.save_image_grid({str(tmp_path / "g.png")!r}, np.zeros((4, 8, 8, 1)), 2)\n'
            'print(matplotlib.rcParams["backend"], "matplotlib.pyplot" in sys.modules)\n')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          check=True, env={**os.environ, 'MPLBACKEND': 'svg'})
  assert result.stdout.split() == ['svg', 'False']
