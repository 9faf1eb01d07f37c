"""The original report's DCGAN on CelebA faces at 28x28 (central 108x108 crop, resized), one epoch.

  python -m experiments.dcgan_celeb_a --data_dir=D                   # 5,086 steps of batch 32
  python -m experiments.dcgan_celeb_a --quick --data_dir=D           # 300 steps
(the default mode is the full one here: no standard budget is defined without the real faces).
With synthetic files (python -m gan_aec.data.celeb_a_synthetic) add --synthetic_data: a check of
the pipeline, whose numbers the results page does not show. Needs CelebA in the TFDS data dir D
(python -m gan_aec.prepare_data --dataset=celeb_a ...). Sample metrics need a face network of
yours: --extractor=python:module:function (see docs/sample_quality.md).
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='dcgan_celeb_a',
    title='DCGAN on CelebA, 28x28',
    config='configs/dcgan.py:celeb_a',
    quick={'num_train_steps': 300, 'eval_every_steps': 150, 'checkpoint_every_steps': 150,
           'sample_every_steps': 50, 'log_every_steps': 25},
    figures=('samples.png', 'progress_strip.png'),
    train_metrics=('d_loss', 'g_loss', 'd_real', 'd_fake'),
    sample_metrics=True,
    original_report='one epoch (~6,330 steps of batch ~32, ~20 min on a GPU): D loss about 1.2 and '
                'G loss about 0.8 near the end, and a grid of 28x28 face samples.',
    original_numbers={'d_loss': 1.2, 'g_loss': 0.8})

if __name__ == '__main__':
  main(EXPERIMENT)
