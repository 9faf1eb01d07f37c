r"""The MNIST classifier whose features define FID, KID and precision/recall of generated digits.

  python -m gan_aec.main --config=configs/mnist_classifier.py --workdir=runs/mnist_classifier

This recipe, trained on the bundled training digits, is mnist-clf-v1, the network shipped in the
package and the default extractor of every MNIST run (`python -m experiments.mnist_classifier
--ship` trains it and writes its weights into gan_aec/classifier/). A network you train yourself
is another network (another hash); point a run at it with
  python -m gan_aec.main --config=configs/dcgan.py --workdir=runs/dcgan \
      --config.sample_metrics.extractor=runs/mnist_classifier
or evaluate a finished run in it: python -m gan_aec.evaluate --workdir=runs/dcgan \
      --extractor=runs/mnist_classifier

Variants: `smoke` (a few steps on tiny batches, for tests).
Outputs: eval_accuracy and eval_loss in metrics.jsonl, figures/confusion_matrix.png and
figures/misclassified.png. Architecture: gan_aec/classifier/model.py (conv 32-32-pool-64-64-pool-
pool, dense 128 = the features, dropout 0.5, dense 10; 197,482 parameters).
"""

import ml_collections

from gan_aec.run import config as config_lib


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.model = 'classifier'
  config.seed = 0
  config.dataset = config_lib.dataset_config('mnist')

  # Blocks of 3x3 convs, each then a 2x2 max pool; the empty third block is a pool alone
  # (28 -> 14 -> 7 -> 4), so the dense layer sees 4 * 4 * 64 values (<1 MB of float32 weights).
  config.conv_features = ((32, 32), (64, 64), ())
  config.feature_dim = 128  # The penultimate layer: the feature space of the sample metrics.
  config.dropout_rate = 0.5
  config.conv_implementation = 'auto'  # gan_aec.layers: the XLA:CPU-friendly form on CPU.

  # Adam with a linear warm-up and cosine decay; random translations of up to 2 pixels.
  config.learning_rate = 2e-3
  config.warmup_steps = 200
  config.max_shift = 2
  # Batch 128, 3,000 steps: 6.4 epochs of the 60,000 training digits (48 of the bundled 8,000).
  config.batch_size = 128
  config.num_train_steps = 3000
  config.eval_batch_size = 1000

  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config_lib.add_loop_fields(config)

  if 'smoke' in config_lib.variants(arg, ('smoke',), 'configs/mnist_classifier.py'):
    config_lib.apply_smoke(config)
    config.warmup_steps = 1
  return config
