"""The repository as a whole: the package's layers import one way, and no committed file holds a
path of the machine that wrote it."""

import ast
import os
import pathlib
import re
import subprocess
import tempfile

from tests import helpers

REPO = helpers.REPO
PACKAGE = REPO / 'gan_aec'

LIBRARY_MODULES = {'autoencoder', 'vae', 'dcgan', 'classifier', 'layers', 'microbatching',
                   'train_state', 'sample_metrics', 'figures', 'errors'}
ENTRY_POINTS = {'main', 'evaluate', 'prepare_data', 'benchmark'}
# What each layer may import from gan_aec (besides itself): the arrows point one way.
# (The data layer may use the library's errors module, and nothing else of the library.)
ALLOWED = {
    'library': {'library'},
    'data': {'data'},
    'run': {'library', 'data', 'run'},
    'entry': {'library', 'data', 'run', 'entry'},
}


def layer_of(module: str) -> str:
  """'library', 'data', 'run' or 'entry' for a gan_aec module name."""
  parts = module.split('.')
  if len(parts) == 1:
    return 'library'  # gan_aec/__init__.py lists the library.
  top = parts[1]
  if top in ('data', 'run'):
    return top
  if top in ENTRY_POINTS:
    return 'entry'
  assert top in LIBRARY_MODULES, f'{module} is in no layer: add it to one'
  return 'library'


def gan_aec_imports(path: pathlib.Path) -> set[str]:
  """The gan_aec modules a file imports (module-level or inside functions)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names if a.name.startswith('gan_aec')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('gan_aec'):
      for alias in node.names:
        full = f'{node.module}.{alias.name}'
        names.add(full if (PACKAGE.parent / (full.replace('.', '/') + '.py')).exists()
                  or (PACKAGE.parent / full.replace('.', '/')).is_dir() else node.module)
  return names


def test_the_tree_shows_the_layers():
  """`ls gan_aec`: the library, data/, run/ and the entry points, nothing else."""
  names = {p.name for p in PACKAGE.iterdir() if p.name not in ('__pycache__', '__init__.py',
                                                                 'py.typed')}
  modules = {name.removesuffix('.py') for name in names}
  assert modules == LIBRARY_MODULES | ENTRY_POINTS | {'data', 'run'}, sorted(modules)


def test_each_layer_imports_only_the_layers_it_may():
  problems = []
  for path in PACKAGE.rglob('*.py'):
    module = '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    module = module.removesuffix('.__init__')
    layer = layer_of(module)
    for imported in gan_aec_imports(path):
      if imported == 'gan_aec.errors':
        continue  # Every layer may raise the errors a user can fix.
      target = layer_of(imported)
      if target not in ALLOWED[layer]:
        problems.append(f'{module} ({layer}) imports {imported} ({target})')
  assert not problems, '\n'.join(problems)


def committed_files() -> list[pathlib.Path]:
  try:
    listed = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split('\n')
  except (OSError, subprocess.CalledProcessError):  # Not a git checkout: every file.
    listed = [str(p.relative_to(REPO)) for p in REPO.rglob('*') if p.is_file()
              and not any(part.startswith('.') for part in p.relative_to(REPO).parts)]
  return [REPO / name for name in listed if name]


def test_no_committed_file_holds_a_path_of_the_machine_that_wrote_it():
  temp = tempfile.gettempdir()
  machine_paths = {str(REPO), str(REPO.parent) + os.sep, temp + os.sep, '/tmp/', 'pytest-of-'}
  home = os.path.expanduser('~')
  if home not in ('', '/', '~'):
    machine_paths.add(home + os.sep)
  pattern = re.compile('|'.join(re.escape(p) for p in sorted(machine_paths)))
  problems = []
  for path in committed_files():
    relative = path.relative_to(REPO)
    if relative.parts[0] == 'tests' or not path.is_file():
      continue
    try:
      text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError:
      continue  # Images, the bundled digits.
    for number, line in enumerate(text.splitlines(), 1):
      match = pattern.search(line)
      if match:
        problems.append(f'{relative}:{number}: {match.group(0)!r} in {line.strip()[:120]}')
  assert not problems, '\n'.join(problems)
