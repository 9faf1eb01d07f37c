"""The original report's denoising autoencoder (32-32-16, input noise 0.5, clipped) on MNIST.

  python -m experiments.denoising_autoencoder_mnist --pytorch  # standard: 2,000 steps, 4 seeds
  python -m experiments.denoising_autoencoder_mnist --full     # the report's 100 epochs
  python -m experiments.denoising_autoencoder_mnist --quick    # 600 steps
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='denoising_autoencoder_mnist',
    title='Denoising autoencoder on MNIST',
    config='configs/denoising_autoencoder.py',
    quick={'num_train_steps': 600, 'eval_every_steps': 300, 'checkpoint_every_steps': 300,
           'log_every_steps': 50},
    standard={'num_train_steps': 2000, 'eval_every_steps': 1000, 'checkpoint_every_steps': 1000},
    standard_seeds=4,
    pytorch_model='denoising_autoencoder', pytorch_seeds=4,
    compared=('eval_loss', 'eval_psnr', 'eval_input_psnr'),
    figures=('denoising.png',),
    train_metrics=('loss',),
    original_report='a figure of noisy test digits over their denoised versions (no number); 100 '
                'epochs of batch 200.')

if __name__ == '__main__':
  main(EXPERIMENT)
