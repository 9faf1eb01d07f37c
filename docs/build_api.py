"""Builds the API reference of gan_aec's public surface from its docstrings (pdoc).

    python docs/build_api.py            # -> docs/api/index.html
    python docs/build_api.py OUT_DIR

Documents `gan_aec` and the public modules its `__all__` names (pdoc follows `__all__`), with
Google-style docstrings. Exits 1, listing the problems, on any pdoc warning (a name in an `__all__`
that does not resolve, a module that fails to import, an annotation that does not evaluate) or on a
link in the generated pages whose target page or anchor does not exist. The test suite runs it
(tests/test_public_api.py), so a broken reference fails the tests.
"""

from __future__ import annotations

import html.parser
import os
import pathlib
import sys
import urllib.parse
import warnings

import pdoc
import pdoc.render

# Warnings about other packages' annotations that pdoc cannot evaluate, not about ours: flax's
# TrainState annotates opt_state with optax's `ArrayTree`, a forward reference that flax's module
# does not define. Matched on the message, so any warning about gan_aec's own code still fails.
_UPSTREAM_WARNINGS = ("Import of ArrayTree failed: name 'ArrayTree' is not defined",)


class _LinksAndIds(html.parser.HTMLParser):
  """Collects the href of every <a> and the id of every element of one page."""

  def __init__(self):
    super().__init__()
    self.hrefs: list[str] = []
    self.ids: set[str] = set()

  def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
    for name, value in attrs:
      if name == 'id' and value:
        self.ids.add(value)
      if tag == 'a' and name == 'href' and value:
        self.hrefs.append(value)


def broken_links(out_dir: pathlib.Path) -> list[str]:
  """Relative links in the pages under out_dir whose page or #anchor does not exist."""
  pages = {}
  for path in out_dir.rglob('*.html'):
    parser = _LinksAndIds()
    parser.feed(path.read_text(encoding='utf-8'))
    pages[path.resolve()] = parser
  problems = []
  for path, parser in sorted(pages.items()):
    for href in parser.hrefs:
      url = urllib.parse.urlsplit(href)
      if url.scheme or url.netloc:
        continue  # External (e.g. a link to another package's documentation).
      target = (path.parent / url.path).resolve() if url.path else path
      if target not in pages:
        problems.append(f'{path.relative_to(out_dir.resolve())}: link to missing page {href!r}')
      elif url.fragment.startswith('_'):
        continue  # pdoc links a private base class (e.g. layers._ConvLayer) it does not document.
      elif url.fragment and url.fragment not in pages[target].ids:
        problems.append(f'{path.relative_to(out_dir.resolve())}: link to missing anchor {href!r}')
  return problems


def build(out_dir: str | os.PathLike[str]) -> list[str]:
  """Writes the HTML reference into out_dir; returns the problems found (empty when clean)."""
  out = pathlib.Path(out_dir)
  pdoc.render.configure(docformat='google', show_source=True)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    pdoc.pdoc('gan_aec', output_directory=out)
  problems = [f'pdoc: {w.message}' for w in caught
              if not any(known in str(w.message) for known in _UPSTREAM_WARNINGS)]
  return problems + broken_links(out)


def main(argv: list[str]) -> int:
  out_dir = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), 'api')
  problems = build(out_dir)
  for problem in problems:
    print(problem, file=sys.stderr)
  if problems:
    print(f'API reference: {len(problems)} problem(s).', file=sys.stderr)
    return 1
  print(f'API reference written to {os.path.join(out_dir, "index.html")}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
