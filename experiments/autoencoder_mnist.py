"""The original report's convolutional autoencoder (16-8-8) on MNIST: reconstructions and
test loss.

  python -m experiments.autoencoder_mnist --pytorch  # standard: 2,000 steps, 8 seeds
                                                     # (+ PyTorch's 4)
  python -m experiments.autoencoder_mnist --full     # the original report's 20 epochs (6,000 steps)
  python -m experiments.autoencoder_mnist --quick    # 200 steps, under a minute on a CPU
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='autoencoder_mnist',
    title='Convolutional autoencoder on MNIST',
    config='configs/autoencoder.py',
    quick={'num_train_steps': 200, 'eval_every_steps': 100, 'checkpoint_every_steps': 100,
           'log_every_steps': 25},
    standard={'num_train_steps': 2000, 'eval_every_steps': 1000, 'checkpoint_every_steps': 1000},
    standard_seeds=8,
    figures=('reconstructions.png',),
    train_metrics=('loss',),
    pytorch_model='autoencoder', pytorch_seeds=4, compared=('eval_loss', 'eval_psnr'),
    original_report='training loss about 0.097 (mean sigmoid cross-entropy per pixel) after 20 '
                'epochs of batch 200; a figure of 10 test digits over their reconstructions.',
    original_numbers={'loss': 0.097})

if __name__ == '__main__':
  main(EXPERIMENT)
