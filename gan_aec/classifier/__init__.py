"""A small convolutional MNIST classifier: the feature extractor of the sample-quality metrics."""

from gan_aec.classifier.model import Classifier
from gan_aec.classifier.steps import cross_entropy, eval_step, random_shift, train_step

__all__ = ['Classifier', 'cross_entropy', 'eval_step', 'random_shift', 'train_step']
