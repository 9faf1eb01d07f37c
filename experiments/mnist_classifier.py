"""The MNIST classifier whose features the sample metrics (FID, KID, ...) of the generators use.

  python -m experiments.mnist_classifier           # configs/mnist_classifier.py, 3,000 steps
  python -m experiments.mnist_classifier --ship    # ... and its weights become mnist-clf-v1
  python -m experiments.mnist_classifier --quick   # 600 steps

--ship writes the trained weights into the package (gan_aec/classifier/mnist_clf_v1.npz): the
network every MNIST run scores its samples in. Do it once per version: weights trained otherwise
(another seed, config, or machine's float arithmetic) are another network (another hash), and
numbers measured in them are not comparable with the old ones. The summary says whether the run
trained the shipped weights again, bit for bit.
"""

import os
import sys

from gan_aec.classifier import shipped

from experiments import common
from experiments.common import Experiment


def _latest_params(workdir: str):
  from gan_aec.run import checkpointing, workdir as run_workdir  # pylint: disable=g-import-not-at-top
  directory = run_workdir.Layout(workdir).checkpoints
  state = checkpointing.restore_on_one_device(directory,
                                              checkpointing.committed_steps(directory)[-1])
  return state['params']


def network(workdir: str) -> dict:
  """The trained network's hash beside the shipped mnist-clf-v1's: whether this command, run
  today, trains the very weights the package ships."""
  trained = shipped.digest(shipped.from_bytes(shipped.to_bytes(_latest_params(workdir))))
  return {'trained': f'sha256:{trained}', 'shipped': f'{shipped.NAME} sha256:{shipped.DIGEST}',
          'same': trained == shipped.DIGEST}


EXPERIMENT = Experiment(
    name='mnist_classifier',
    title='MNIST classifier (the feature network mnist-clf-v1)',
    config='configs/mnist_classifier.py',
    quick={'num_train_steps': 600, 'warmup_steps': 100, 'eval_every_steps': 300,
           'checkpoint_every_steps': 300},
    figures=('confusion_matrix.png', 'misclassified.png'),
    train_metrics=('loss',),
    original_report='not in the original report: our yardstick for its generators.',
    network=network)


def ship(workdir: str) -> str:
  """Writes the latest parameters of the classifier run in `workdir` as the shipped weights;
  returns their description (name and hash)."""
  data = shipped.to_bytes(_latest_params(workdir))
  path = os.path.join(common.REPO, 'gan_aec', 'classifier', shipped.WEIGHTS_FILE)
  with open(path, 'wb') as f:
    f.write(data)
  return shipped.describe(shipped.from_bytes(data))


if __name__ == '__main__':
  argv = [a for a in sys.argv[1:] if a != '--ship']
  common.main(EXPERIMENT, argv)
  if '--ship' in sys.argv[1:]:
    workdir = common.workdir_for(EXPERIMENT, common.parse_args(argv))
    print(f'Shipped {ship(workdir)} to gan_aec/classifier/{shipped.WEIGHTS_FILE}')
