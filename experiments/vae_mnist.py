"""The report's convolutional VAE (latent 2) on MNIST: latent scatter, 20x20 manifold, samples.

  python -m experiments.vae_mnist --pytorch  # standard: 3,000 steps, 8 seeds (+ PyTorch's 8)
  python -m experiments.vae_mnist --full     # the original report's 7 epochs of batch 16
  python -m experiments.vae_mnist --quick    # 1,000 steps
"""

from experiments.common import Experiment, main

EXPERIMENT = Experiment(
    name='vae_mnist',
    title='Convolutional VAE (latent 2) on MNIST',
    config='configs/vae.py',
    quick={'num_train_steps': 1000, 'eval_every_steps': 500, 'checkpoint_every_steps': 500},
    # One evaluation, at the end: the IWAE bound (100 samples) of eight seeds takes minutes.
    standard={'num_train_steps': 3000, 'eval_every_steps': 3000, 'checkpoint_every_steps': 1500,
              'eval_at_start': False},
    standard_seeds=8,
    pytorch_model='vae', pytorch_seeds=4,
    compared=('eval_neg_elbo', 'eval_recon', 'eval_kl', 'eval_iwae_nll'),
    figures=('latent_scatter.png', 'manifold.png', 'samples.png', 'reconstructions.png',
             'interpolation.png'),
    train_metrics=('loss',),
    sample_metrics=True,
    original_report='figures only: the test set\'s latent means coloured by digit, and a 20x20 '
                    'grid decoded over the prior\'s quantiles; its loss (mean BCE + 5e-4 KL) is '
                    'not an ELBO, so no likelihood to compare (see configs/vae.py:seed_loss).')

if __name__ == '__main__':
  main(EXPERIMENT)
