r"""The original report's denoising autoencoder (32-32-16) on MNIST with Gaussian input noise 0.5.

  python -m gan_aec.main --config=configs/denoising_autoencoder.py --workdir=runs/denoising

Variants, combinable with commas: `celeb_a` (CelebA faces, central 108x108 crop resized to
28x28 RGB; same steps), `smoke` (a few steps on tiny batches, for tests).
The input is clip(x + 0.5 * N(0, 1), 0, 1) and the target the clean digit. Outputs:
figures/denoising.png (noisy, denoised and clean rows), eval_loss, eval_psnr and eval_input_psnr
(the noisy input's PSNR: the baseline the model must beat).
Differs from the original report: its graph fed conv4 to the last upsample, leaving conv5 dead;
we wire conv5.
"""

import ml_collections

from gan_aec.run import config as config_lib


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.model = 'denoising_autoencoder'
  config.seed = 0
  config.dataset = config_lib.dataset_config('mnist')

  # Model: encoder widths 32-32-16 (code 4x4x16), decoder 16-32-32, then 1-channel logits.
  config.encoder_features = (32, 32, 16)
  config.decoder_features = (16, 32, 32)
  # 'auto': convolutions in the form XLA:CPU runs fast on CPU (same function, same parameters; see
  # gan_aec/layers.py), the textbook lax form elsewhere. 'fast' or 'xla' to force one.
  config.conv_implementation = 'auto'
  # 'bfloat16': activations and matmuls in bfloat16 (parameters, optimizer state, BatchNorm
  # statistics and losses stay float32). For GPUs/TPUs; no faster on XLA:CPU. Results differ from
  # float32, so a run cannot switch it on resume.
  config.compute_dtype = 'float32'
  # Kernel initialisation: 'lecun_normal' (Flax's default) rather than the report's TF1
  # 'glorot_uniform': 2,000 steps on the 8,000 real digits reached 17.68 / 17.80 dB (seeds 0 / 1)
  # against 17.47 / 17.40.
  config.kernel_init = 'lecun_normal'
  config.noise_std = 0.5  # Std of the Gaussian noise added to inputs in [0, 1] before clipping.

  # Training as in the report: Adam 1e-3, batch 200, 100 epochs of the 60,000 digits = 30,000 steps.
  config.learning_rate = 1e-3
  # Gradient computed in passes over this many images and summed: the same gradient, ~1.5x faster
  # on CPU (activations stay in cache). None: automatic (8 on CPU, the whole batch on GPU/TPU).
  config.microbatch_size = ml_collections.FieldReference(None, field_type=int)
  config.batch_size = 200
  config.num_train_steps = 30000
  config.eval_batch_size = 1000

  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config_lib.add_loop_fields(config)

  chosen = config_lib.variants(arg, ('celeb_a', 'smoke'), 'configs/denoising_autoencoder.py')
  if 'celeb_a' in chosen:
    config.dataset.name = 'celeb_a'
  if 'smoke' in chosen:
    config_lib.apply_smoke(config)
  return config
