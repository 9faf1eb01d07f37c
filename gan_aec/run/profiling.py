"""Where a compiled step's time goes, op by op (`python -m gan_aec.benchmark --profile`).

XLA:CPU records one trace event per executed op ("thunk") when JAX runs with
`--xla_cpu_enable_xprof_traceme=true` in XLA_FLAGS (set before JAX starts its CPU backend). The
events carry the names of the compiled program's instructions, so joining them with the compiled
HLO text gives each instruction's kind: a convolution (grouped or not), a matmul, a fusion of
elementwise ops, a copy, a collective, ... `profile` runs a step function under
jax.profiler.trace and sums its events' time by kind.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile
from typing import Callable

import jax

TRACEME_FLAG = '--xla_cpu_enable_xprof_traceme=true'

_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\(')
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$')
_CALLS = re.compile(r'calls=%?([\w.\-]+)')


def enable_op_tracing() -> None:
  """Adds TRACEME_FLAG to XLA_FLAGS; only effective before JAX starts its CPU backend."""
  flags = os.environ.get('XLA_FLAGS', '')
  if TRACEME_FLAG not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {TRACEME_FLAG}'.strip()


def _kind(opcode: str, line: str, computations: dict[str, list[str]]) -> str:
  """The kind of one instruction: what the ops inside a fusion amount to."""
  ops, lines = [opcode], [line]
  pending = _CALLS.findall(line)
  while pending:  # The ops of the fused (or called) computations, nested ones included.
    for inner in computations.get(pending.pop(), []):
      match = _INSTRUCTION.match(inner)
      if match:
        ops.append(match.group(2))
        lines.append(inner)
        pending.extend(_CALLS.findall(inner))
  if 'convolution' in ops:
    conv = next(text for text, op in zip(lines, ops) if op == 'convolution')
    grouped = re.search(r'(feature|batch)_group_count=(\d+)', conv)
    return 'convolution, grouped' if grouped else 'convolution'
  if 'dot' in ops:
    return 'matmul (dot)'
  for names, kind in ((('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute',
                        'all-to-all'), 'collective'),
                      (('while', 'conditional', 'call'), 'control flow'),
                      (('concatenate', 'dynamic-update-slice'), 'concatenate / update-slice'),
                      (('reduce', 'reduce-window', 'select-and-scatter'), 'reduction'),
                      (('transpose', 'copy'), 'copy / transpose'),
                      (('pad', 'slice', 'dynamic-slice', 'gather', 'scatter'),
                       'pad / slice / gather')):
    if any(o in names for o in ops):
      return kind
  return 'elementwise'


def instruction_kinds(hlo_text: str) -> dict[str, str]:
  """{instruction name: kind} of every instruction in a compiled program's HLO text."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    match = _COMPUTATION.match(line)
    if match and not line.startswith(' '):
      current = computations.setdefault(match.group(1), [])
    elif current is not None:
      current.append(line)
  kinds = {}
  for lines in computations.values():
    for line in lines:
      match = _INSTRUCTION.match(line)
      if match:
        kinds[match.group(1)] = _kind(match.group(2), line, computations)
  return kinds


def profile(run_steps: Callable[[], None], hlo_text: str, steps: int) -> list[dict]:
  """Runs `run_steps()` (which runs `steps` steps and waits for them) under the profiler; returns
  [{'kind', 'ms_per_step', 'ops_per_step'}] by total time, over every device (ops that ran at
  the same time on several devices add up), and a 'total' entry first."""
  kinds = instruction_kinds(hlo_text)
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      run_steps()
    paths = glob.glob(os.path.join(directory, '**', '*.trace.json.gz'), recursive=True)
    with gzip.open(paths[0]) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  time_us, count = collections.Counter(), collections.Counter()
  for event in events:
    kind = kinds.get(event.get('name'))
    if event.get('ph') == 'X' and kind is not None:
      time_us[kind] += event['dur']
      count[kind] += 1
  total = sum(time_us.values())
  rows = [{'kind': 'total', 'ms_per_step': total / steps / 1e3,
           'ops_per_step': sum(count.values()) / steps}]
  rows += [{'kind': kind, 'ms_per_step': us / steps / 1e3, 'ops_per_step': count[kind] / steps}
           for kind, us in time_us.most_common()]
  return rows
