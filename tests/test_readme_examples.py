"""The README's "Using gan_aec in your own code" blocks run as pasted, so the docs cannot drift.

Each ```python block of that section runs in a fresh interpreter with a temporary working directory;
a renamed export or a changed signature makes it fail here.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SECTION = '## Using gan_aec in your own code'
MAX_LINES = 25


def readme_blocks() -> list[str]:
  """The ```python blocks between the section's heading and the next '## ' heading."""
  text = (REPO / 'README.md').read_text(encoding='utf-8')
  start = text.index(SECTION)
  end = text.find('\n## ', start + len(SECTION))
  section = text[start:end if end >= 0 else len(text)]
  return re.findall(r'^```python\n(.*?)^```$', section, re.S | re.M)


BLOCKS = readme_blocks()
NAMES = ['dcgan_own_loop', 'vae_elbo_own_model', 'fast_conv_transpose']


def test_the_section_has_the_three_examples_and_they_are_short():
  assert len(BLOCKS) == len(NAMES), f'expected {len(NAMES)} python blocks, found {len(BLOCKS)}'
  for block in BLOCKS:
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) <= MAX_LINES, block


@pytest.mark.parametrize('block', BLOCKS, ids=NAMES[:len(BLOCKS)])
def test_readme_block_runs_as_pasted(block, tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  result = subprocess.run([sys.executable, '-c', block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, f'stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}'
  for png in re.findall(r"'([\w./-]+\.png)'", block):
    assert (tmp_path / png).stat().st_size > 0, f'{png} was not written'
