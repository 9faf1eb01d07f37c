"""The original report's convolutional autoencoder (16-8-8) on MNIST: reconstructions and test loss.

  python -m experiments.autoencoder_mnist                       # the original report's 20 epochs
  python -m experiments.autoencoder_mnist --quick --data_dir=D  # 200 steps, under a minute on a CPU
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='autoencoder_mnist',
    title='Convolutional autoencoder on MNIST',
    config='configs/autoencoder.py',
    quick={'num_train_steps': 200, 'eval_every_steps': 100, 'checkpoint_every_steps': 100,
           'log_every_steps': 25},
    figures=('reconstructions.png',),
    train_metrics=('loss',),
    original_report='training loss about 0.097 (mean sigmoid cross-entropy per pixel) after 20 epochs '
                'of batch 200; a figure of 10 test digits over their reconstructions.',
    original_numbers={'loss': 0.097})

if __name__ == '__main__':
  main(EXPERIMENT)
