r"""The original report's convolutional autoencoder (16-8-8) on MNIST.

  python -m gan_aec.main --config=configs/autoencoder.py --workdir=runs/autoencoder

Variants, combinable with commas: `celeb_a` (CelebA faces, central 108x108 crop resized to
28x28 RGB; same steps), `smoke` (a few steps on tiny batches, for tests).
Outputs: figures/reconstructions.png (test digits over their reconstructions), eval_loss (mean
sigmoid cross-entropy per pixel, the original report's figure) and eval_psnr in metrics.jsonl.
"""

import ml_collections

from gan_aec.run import config as config_lib


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.model = 'autoencoder'
  config.seed = 0
  config.dataset = config_lib.dataset_config('mnist')

  # Model: encoder Conv widths (each followed by a 2x2 max pool), decoder Conv widths (each after a
  # nearest resize back to 7, 14, 28), then a 1-channel logits Conv. Code: 4x4x8 = 128 values.
  config.encoder_features = (16, 8, 8)
  config.decoder_features = (8, 8, 16)
  # 'auto': convolutions in the form XLA:CPU runs fast on CPU (same function, same parameters; see
  # gan_aec/layers.py), the textbook lax form elsewhere. 'fast' or 'xla' to force one.
  config.conv_implementation = 'auto'
  # 'bfloat16': activations and matmuls in bfloat16 (parameters, optimizer state, BatchNorm
  # statistics and losses stay float32). For GPUs/TPUs; no faster on XLA:CPU. Results differ from
  # float32, so a run cannot switch it on resume.
  config.compute_dtype = 'float32'
  # Kernel initialisation: 'glorot_uniform' as TF1's conv2d in the report (2,000 steps on the 8,000
  # real digits: 19.08 dB, against 18.86 dB with Flax's 'lecun_normal').
  config.kernel_init = 'glorot_uniform'
  config.noise_std = 0.0  # No input corruption: a plain autoencoder.

  # Training as in the report: Adam 1e-3, batch 200, 20 epochs of the 60,000 digits = 6,000 steps.
  config.learning_rate = 1e-3
  # Gradient computed in passes over this many images and summed: the same gradient, ~1.5x faster
  # on CPU (activations stay in cache). None: automatic (8 on CPU, the whole batch on GPU/TPU).
  config.microbatch_size = ml_collections.FieldReference(None, field_type=int)
  config.batch_size = 200
  config.num_train_steps = 6000
  config.eval_batch_size = 1000

  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config_lib.add_loop_fields(config)

  chosen = config_lib.variants(arg, ('celeb_a', 'smoke'), 'configs/autoencoder.py')
  if 'celeb_a' in chosen:
    config.dataset.name = 'celeb_a'
  if 'smoke' in chosen:
    config_lib.apply_smoke(config)
  return config
