"""The MNIST classifier whose features the sample metrics (FID, KID, ...) of the generators use.

  python -m experiments.mnist_classifier                       # 3,000 steps
  python -m experiments.mnist_classifier --quick --data_dir=D  # 600 steps
The generator experiments train it first when it is missing (same mode, same --runs_dir).
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='mnist_classifier',
    title='MNIST classifier (the feature extractor)',
    config='configs/mnist_classifier.py',
    quick={'num_train_steps': 600, 'warmup_steps': 100, 'eval_every_steps': 300,
           'checkpoint_every_steps': 300},
    figures=('confusion_matrix.png', 'misclassified.png'),
    train_metrics=('loss',),
    original_report='not in the Original report: our yardstick for its generators.')

if __name__ == '__main__':
  main(EXPERIMENT)
