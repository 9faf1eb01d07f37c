"""The DCGAN paper's 64x64 stack on CelebA (what GAN papers report on), 5 epochs of batch 128.

  python -m experiments.dcgan_celeb_a64 --data_dir=D           # 6,355 steps of batch 128
  python -m experiments.dcgan_celeb_a64 --quick --data_dir=D   # 40 steps of batch 32
(the default mode is the full one here: no standard budget is defined without the real faces).
With synthetic files (python -m gan_aec.data.celeb_a_synthetic) add --synthetic_data: a check of
the pipeline, whose numbers the results page does not show. Needs CelebA in D; sample metrics
need --extractor=python:module:function (see docs/sample_quality.md).
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='dcgan_celeb_a64',
    title='DCGAN on CelebA, 64x64',
    config='configs/dcgan.py:celeb_a64',
    quick={'num_train_steps': 40, 'batch_size': 32, 'eval_every_steps': 20,
           'checkpoint_every_steps': 20, 'sample_every_steps': 10, 'log_every_steps': 10},
    figures=('samples.png', 'progress_strip.png'),
    train_metrics=('d_loss', 'g_loss', 'd_real', 'd_fake'),
    sample_metrics=True,
    original_report='not in the original report (it trained at 28x28); the DCGAN paper\'s setting.')

if __name__ == '__main__':
  main(EXPERIMENT)
