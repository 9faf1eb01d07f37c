r"""The seed's DCGAN on MNIST (28x28).

  python -m gan_aec.main --config=configs/dcgan.py --workdir=runs/dcgan

Variants: `configs/dcgan.py:smoke` (a few steps on tiny batches, for tests).
Outputs: figures/samples.png (an 8x8 grid from a fixed noise batch, kept in sample_noise.npy so
grids stay comparable across resumes), samples_stepNNNNNN.png every sample_every_steps, and
progress_strip.png (the same noise at successive steps); d_loss, g_loss, d_real (mean D(x)) and
d_fake (mean D(G(z))) every log_every_steps; eval_d_real (D on held-out real digits).
"""

import ml_collections

from gan_aec import config_lib

VARIANTS = ('smoke',)


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.model = 'dcgan'
  config.seed = 0
  config.dataset = config_lib.dataset_config('mnist')
  config.image_size = 28  # The seed's size.

  config.latent_dim = 100  # z ~ Uniform[-1, 1]^100, as in the seed.
  config.conv_implementation = 'auto'  # gan_aec.layers: the XLA:CPU-friendly form on CPU.
  # 'non_saturating' (the seed's sigmoid cross-entropy), 'hinge' or 'least_squares'.
  config.loss = 'non_saturating'
  config.real_label = 0.9  # The seed's one-sided label smoothing of the discriminator's targets.
  # Exponential moving average of the generator's weights, used for samples when set (e.g. 0.999).
  config.ema_decay = ml_collections.FieldReference(None, field_type=float)

  # Adam with beta1 0.5 and lr 2e-4 (the DCGAN paper); batch 64; 4 epochs of 60,000 digits.
  config.learning_rate = 2e-4
  config.adam_beta1 = 0.5
  config.batch_size = 64
  config.num_train_steps = 3750
  config.eval_batch_size = 500

  config.log_every_steps = 10  # The seed logs every 10 steps...
  config.sample_every_steps = 100  # ...and shows a sample grid every 100.
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 500
  config_lib.add_loop_fields(config)

  for variant in (arg.split(',') if arg else []):
    if variant == 'smoke':
      config_lib.apply_smoke(config)
      config.sample_every_steps = 2
    else:
      raise ValueError(f'Unknown variant {variant!r} of configs/dcgan.py; known: {VARIANTS}.')
  return config
