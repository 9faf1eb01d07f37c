r"""Recomputes a run's sample metrics from its checkpoints into WORKDIR/eval.json.

  python -m gan_aec.evaluate --workdir=runs/dcgan --checkpoint=latest,best
  python -m gan_aec.evaluate --workdir=runs/dcgan --extractor=runs/mnist_classifier
  python -m gan_aec.evaluate --workdir=runs/mnist_classifier --references

N generated images (the same latents the training loop scores) against the first N test images,
in the extractor's features: FID, KID (+ std over subsets), precision, recall, density, coverage
and, with a classifier, the class histogram, classes covered, mean confidence and classifier
score; --references adds real training images, uniform noise and one repeated image as
yardsticks. See gan_aec.run.evaluation.evaluate_checkpoints.
"""

from __future__ import annotations

import sys

from absl import app, flags

from gan_aec import errors
from gan_aec.run import evaluation, workdir as run_workdir

flags.DEFINE_string('workdir', None, 'The run to evaluate.', required=True)
flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' (lowest FID during training), "
                    'a step, or several separated by commas, e.g. latest,best.')
flags.DEFINE_string('extractor', None, 'mnist-clf-v1 (the shipped MNIST network), a classifier '
                    "workdir or python:module:function; default: the run's "
                    'config.sample_metrics.extractor, and mnist-clf-v1 for MNIST runs without one.')
flags.DEFINE_integer('num_samples', None, 'N; default: the config\'s sample_metrics.num_samples '
                     '(10,000), at most the test split size.')
flags.DEFINE_bool('references', False, 'Also score real training images, noise and one repeated '
                  'image against the test images.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  flag = flags.FLAGS
  try:
    evaluation.evaluate_checkpoints(flag.workdir, checkpoint=flag.checkpoint,
                                    extractor=flag.extractor, num_samples=flag.num_samples,
                                    references=flag.references)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(f'Wrote {run_workdir.Layout(flag.workdir).eval_file}')


if __name__ == '__main__':
  app.run(main)
