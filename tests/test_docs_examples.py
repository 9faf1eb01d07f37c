"""The ```python blocks of README.md and docs/library.md ("Using gan_aec in your own code") run
as pasted, so the docs cannot drift.

Each block runs in a fresh interpreter with a temporary working directory; a renamed export or a
changed signature makes it fail here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests import helpers

REPO = helpers.REPO
MAX_LINES = 25


def python_blocks(page: str) -> list[str]:
  """The page's ```python blocks."""
  return re.findall(r'^```python\n(.*?)^```$', (REPO / page).read_text(encoding='utf-8'),
                    re.S | re.M)


BLOCKS = python_blocks('README.md') + python_blocks('docs/library.md')
NAMES = ['readme_vae_state', 'dcgan_own_loop', 'vae_elbo_own_model', 'fast_conv_transpose']


def test_the_section_has_the_three_examples_and_they_are_short():
  assert len(BLOCKS) == len(NAMES), f'expected {len(NAMES)} python blocks, found {len(BLOCKS)}'
  for block in BLOCKS:
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) <= MAX_LINES, block


@pytest.mark.slow
@pytest.mark.parametrize('block', BLOCKS, ids=NAMES[:len(BLOCKS)])
def test_block_runs_as_pasted(block, tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  result = subprocess.run([sys.executable, '-c', block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, f'stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}'
  for png in re.findall(r"'([\w./-]+\.png)'", block):
    assert (tmp_path / png).stat().st_size > 0, f'{png} was not written'
