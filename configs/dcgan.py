r"""The original report's DCGAN on MNIST (28x28), or on CelebA faces at 28x28 (the report) or
64x64 (the paper).

  python -m gan_aec.main --config=configs/dcgan.py --workdir=runs/dcgan

Variants, combinable with commas (e.g. `configs/dcgan.py:celeb_a64`):
  celeb_a     CelebA, central 108x108 crop resized to 28x28 RGB, the original report's generator
              and discriminator; batch 32 for one epoch of the 162,770 training faces (the report
              ran one epoch at batch ~32). Data: `python -m gan_aec.prepare_data --dataset=celeb_a
              ...` offline, then --config.dataset.data_dir=TFDS_DIR.
  celeb_a64   CelebA at 64x64 with the DCGAN paper's layer stack (64-128-256-512 discriminator,
              mirror-image generator), batch 128 for 5 epochs: the size GAN papers report on.
  smoke       a few steps on tiny batches, for tests.
Outputs: figures/samples.png (an 8x8 grid from a fixed noise batch, kept in sample_noise.npy so
grids stay comparable across resumes), samples_stepNNNNNN.png every sample_every_steps, and
progress_strip.png (the same noise at successive steps); d_loss, g_loss, d_real (mean D(x)) and
d_fake (mean D(G(z))) every log_every_steps; eval_d_real (D on held-out real images).
Sample metrics (FID, KID, precision/recall, density/coverage, classes covered) against the test
split at every evaluation, in the features of mnist-clf-v1 (the network shipped in the package),
and the best-FID state in WORKDIR/best_checkpoint. On CelebA no network ships: name yours with
--config.sample_metrics.extractor=python:module:function (docs/sample_quality.md).
"""

import ml_collections

from gan_aec.run import config as config_lib

VARIANTS = ('celeb_a', 'celeb_a64', 'smoke')
CELEB_A_TRAIN_IMAGES = 162_770  # The official train partition.


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.model = 'dcgan'
  config.seed = 0
  config.dataset = config_lib.dataset_config('mnist')
  config.image_size = 28  # The original report's size; 64 (CelebA only) is the DCGAN paper's stack.

  config.latent_dim = 100  # z ~ Uniform[-1, 1]^100, as in the original report.
  config.conv_implementation = 'auto'  # gan_aec.layers: the XLA:CPU-friendly form on CPU.
  # 'bfloat16': activations and matmuls in bfloat16 (parameters, optimizer state, BatchNorm
  # statistics and losses stay float32). For GPUs/TPUs; no faster on XLA:CPU. Results differ from
  # float32, so a run cannot switch it on resume.
  config.compute_dtype = 'float32'
  # 'non_saturating' (the original report's sigmoid cross-entropy), 'hinge' or 'least_squares'.
  config.loss = 'non_saturating'
  # The discriminator's target for real images. None: the report's one-sided label smoothing,
  # 0.9, with the non-saturating loss, and 1.0 (each loss's standard form) with hinge and least
  # squares; the run records the value it used in config.json.
  config.real_label = ml_collections.FieldReference(None, field_type=float)
  # Exponential moving average of the generator's weights, used for samples when set (e.g. 0.999).
  config.ema_decay = ml_collections.FieldReference(None, field_type=float)

  # Adam with beta1 0.5 and lr 2e-4 (the DCGAN paper); batch 64; 4 epochs of 60,000 digits.
  config.learning_rate = 2e-4
  config.adam_beta1 = 0.5
  config.batch_size = 64
  config.num_train_steps = 3750
  config.eval_batch_size = 500

  config.log_every_steps = 10  # The original report logs every 10 steps...
  config.sample_every_steps = 100  # ...and shows a sample grid every 100.
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 500
  config.sample_metrics = config_lib.sample_metrics_config()
  config_lib.add_loop_fields(config, sweepable=('learning_rate', 'real_label'))
  # On CPU, train as one device that uses every core (True: one device per core, each on a shard
  # of the batch, as the other models do; the DCGAN's BatchNorm and wide matmuls are faster whole).
  config.cpu_data_parallel = False

  chosen = config_lib.variants(arg, VARIANTS, 'configs/dcgan.py')
  if chosen & {'celeb_a', 'celeb_a64'}:
    config.dataset.name = 'celeb_a'
    config.sample_metrics.extractor = None  # mnist-clf-v1 scores digits; bring your own.
  if 'celeb_a' in chosen:
    config.batch_size = 32
    config.num_train_steps = CELEB_A_TRAIN_IMAGES // 32  # One epoch: 5,086 steps.
  if 'celeb_a64' in chosen:
    config.image_size = 64
    config.batch_size = 128
    config.num_train_steps = 5 * (CELEB_A_TRAIN_IMAGES // 128)  # 5 epochs: 6,355 steps.
  if 'smoke' in chosen:  # Last: it shrinks whatever the others set.
    config_lib.apply_smoke(config)
    config.sample_every_steps = 2
    config.sample_metrics.num_samples = 200
  return config
