"""A small convolutional MNIST classifier: the feature extractor of the sample-quality metrics.

Public API: the model, its pure loss and augmentation, the state constructor, the pure train and
eval steps, and the feature embedding that gan_aec.sample_metrics compares.
"""

from gan_aec.classifier.model import Classifier
from gan_aec.classifier.steps import (create_train_state, cross_entropy, eval_step, features,
                                      random_shift, train_step)

__all__ = ['Classifier', 'create_train_state', 'cross_entropy', 'eval_step', 'features',
           'random_shift', 'train_step']
