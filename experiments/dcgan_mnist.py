"""The original report's DCGAN on MNIST: sample grids, the progress strip, FID and friends.

  python -m experiments.dcgan_mnist --pytorch  # standard: 2,000 steps, 4 seeds (+ PyTorch's 2)
  python -m experiments.dcgan_mnist --full     # the config's 3,750 steps of batch 64
  python -m experiments.dcgan_mnist --quick    # 500 steps
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='dcgan_mnist',
    title='DCGAN on MNIST',
    config='configs/dcgan.py',
    quick={'num_train_steps': 500, 'eval_every_steps': 250, 'checkpoint_every_steps': 250,
           'sample_every_steps': 50, 'log_every_steps': 25},
    standard={'num_train_steps': 2000},
    standard_seeds=4,
    pytorch_model='dcgan', pytorch_seeds=2,
    compared=('eval_fid', 'eval_kid', 'eval_precision', 'eval_recall', 'eval_coverage'),
    figures=('samples.png', 'progress_strip.png'),
    train_metrics=('d_loss', 'g_loss', 'd_real', 'd_fake'),
    sample_metrics=True,
    original_report='losses logged every 10 steps and a grid of samples; no number.')

if __name__ == '__main__':
  main(EXPERIMENT)
