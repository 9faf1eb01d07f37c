"""The PyTorch port (pytorch_port/, outside the package) computes exactly our models' functions:
the reference our trained numbers are compared with. Skipped where torch is not installed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import autoencoder, classifier, dcgan, vae
from gan_aec.data import mnist
from gan_aec.data.batching import to_float
from gan_aec.run import config as config_lib, tasks

torch = pytest.importorskip('torch')
from pytorch_port import models, train  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='module')
def images():
  return to_float(mnist.load_bundled().train.images[:8])


def test_same_padding_layers_match_lax():
  x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype(np.float32)
  for stride, size in ((1, 7), (2, 4)):
    conv = models.SameConv2d(3, 4, 5, stride)
    kernel = conv.weight.detach().numpy().transpose(2, 3, 1, 0)
    want = jax.lax.conv_general_dilated(x, kernel, (stride, stride), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    got = (conv(models.to_nchw(x)).detach().numpy().transpose(0, 2, 3, 1)
           - conv.bias.detach().numpy())
    assert got.shape == (2, size, size, 4)
    np.testing.assert_allclose(got, want, atol=1e-5)
  for k in (3, 5):
    deconv = models.SameConvTranspose2d(3, 4, k)
    kernel = deconv.weight.detach().numpy()[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
    want = jax.lax.conv_transpose(x, kernel, (2, 2), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    got = deconv(models.to_nchw(x)).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got - deconv.bias.detach().numpy(), want, atol=1e-5)


def test_autoencoder_port_computes_our_function(images):
  model = autoencoder.ConvAutoencoder(encoder_features=(32, 32, 16), decoder_features=(16, 32, 32))
  params = model.init(jax.random.key(0), images)['params']
  port = models.load_flax_params(models.ConvAutoencoder((32, 32, 16), (16, 32, 32)),
                                 jax.device_get(params))
  want = np.asarray(model.apply({'params': params}, images))
  got = port(models.to_nchw(images)).detach().numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_vae_port_has_our_loss_gradients_and_rmsprop_steps(images):
  config = tasks.resolve_defaults(config_lib.load_config('vae'))
  state = tasks.build_task(config).create_state(jax.random.key(2), {'image': images})
  eps = np.asarray(jax.random.normal(jax.random.key(5), (len(images), 2)))

  def loss_fn(params):
    mean, logvar = state.apply_fn({'params': params}, images, method='encode')
    logits = state.apply_fn({'params': params}, mean + jnp.exp(0.5 * logvar) * eps,
                            method='decode')
    return vae.negative_elbo(logits=logits, targets=images, mean=mean,
                             logvar=logvar)['neg_elbo'].mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  port = models.load_flax_params(models.ConvVAE(), jax.device_get(state.params))
  x = models.to_nchw(images)
  logits, mean, logvar = port(x, torch.from_numpy(eps))
  recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction='sum')
  port_loss = recon / len(images) + 0.5 * (logvar.exp() + mean ** 2 - 1 - logvar).sum(1).mean()
  port_loss.backward()
  np.testing.assert_allclose(float(port_loss.detach()), float(loss), rtol=1e-5)
  for got, want in ((port.encoder_dense.weight.grad, grads['encoder_dense']['kernel'].T),
                    (port.decoder_deconv.bias.grad, grads['decoder_deconv']['bias']),
                    (port.logvar.weight.grad, grads['logvar']['kernel'].T)):
    want = np.asarray(want)  # Float32 sums in another order: relative to the largest entry.
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5 * np.abs(want).max())

  # Three steps from the same gradients: our run's optimizer (the config's RMSprop, bias-corrected,
  # eps inside the square root) and the port's.
  opt = train.OptaxRMSprop(port.parameters(), config.learning_rate, config.rmsprop_decay,
                           bias_correction=config.rmsprop_bias_correction)
  for _ in range(3):
    opt.step()
    state = state.apply_gradients(grads=grads)
  for got, want in ((port.logvar.weight, state.params['logvar']['kernel'].T),
                    (port.decoder_deconv.bias, state.params['decoder_deconv']['bias'])):
    np.testing.assert_allclose(got.detach().numpy(), np.asarray(want), atol=1e-6)


@pytest.mark.slow
def test_dcgan_and_classifier_ports_compute_our_functions(images):
  z = np.random.default_rng(0).uniform(-1, 1, (4, 100)).astype(np.float32)
  generator, discriminator = dcgan.Generator(), dcgan.Discriminator()
  g_vars = generator.init(jax.random.key(0), z, train=False)
  d_vars = discriminator.init(jax.random.key(1), images[:4] * 2 - 1, train=False)
  # Non-trivial running statistics, so that inference mode's use of them is checked too.
  g_vars = {'params': g_vars['params'], 'batch_stats': jax.tree.map(
      lambda x: x + 0.1 * np.random.default_rng(2).random(x.shape, np.float32),
      g_vars['batch_stats'])}
  port_g = models.load_flax_params(models.Generator(), jax.device_get(g_vars['params']),
                                   jax.device_get(g_vars['batch_stats'])).eval()
  port_d = models.load_flax_params(models.Discriminator(), jax.device_get(d_vars['params']),
                                   jax.device_get(d_vars['batch_stats'])).eval()
  fake = np.asarray(generator.apply(g_vars, z, train=False))
  with torch.no_grad():
    port_fake = port_g(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    port_logits = port_d(models.to_nchw(fake)).numpy()
  np.testing.assert_allclose(port_fake, fake, atol=1e-4)
  np.testing.assert_allclose(port_logits,
                             np.asarray(discriminator.apply(d_vars, fake, train=False)),
                             rtol=1e-4, atol=1e-4)

  model = classifier.Classifier(conv_features=((32, 32), (64, 64), ()))
  params = model.init(jax.random.key(3), images)['params']
  port = models.load_flax_params(models.Classifier(((32, 32), (64, 64), ())),
                                 jax.device_get(params)).eval()
  with torch.no_grad():
    got = port(models.to_nchw(images)).numpy()
  np.testing.assert_allclose(got, np.asarray(model.apply({'params': params}, images)),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('model', ['autoencoder', 'denoising_autoencoder', 'vae', 'dcgan'])
def test_port_initialises_each_layer_as_our_run_does(model):
  """Each conv and linear layer of the port's networks starts from the distribution of ours (the
  state our loop creates from the same config): kernels of the same std and range, zero biases."""
  config = tasks.resolve_defaults(config_lib.load_config(model))
  state = tasks.build_task(config).create_state(
      jax.random.key(0), {'image': np.zeros((1, 28, 28, 1), np.float32)})
  ours = ({'model': state.params} if model != 'dcgan' else
          {'generator': state.generator.params, 'discriminator': state.discriminator.params})
  torch.manual_seed(0)
  port = train.networks(model, config)
  for name, params in ours.items():
    reference = models.load_flax_params(train.networks(model, config)[name],
                                        jax.device_get(params))
    layers = [(a, b) for a, b in zip(port[name].modules(), reference.modules())
              if isinstance(a, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert layers
    for got, want in layers:
      w, v = got.weight.detach(), want.weight.detach()
      assert w.shape == v.shape
      where = f'{name} {type(got).__name__} {tuple(w.shape)}'
      assert not got.bias.detach().any() and not want.bias.detach().any(), where
      if w.numel() < 1000:  # Too few draws to compare their spread (at 64, it varies by ~10%).
        continue
      np.testing.assert_allclose(float(w.std()), float(v.std()), rtol=0.1, err_msg=where)
      np.testing.assert_allclose(float(w.abs().max()), float(v.abs().max()), rtol=0.15,
                                 err_msg=where)


@pytest.mark.slow
def test_dcgan_port_step_updates_every_weight_and_statistic_as_our_train_step(images, monkeypatch):
  """From the same weights, real images and latents, with dropout off and plain SGD (so that each
  update is the gradient itself), the port's step (train.dcgan_step) changes every parameter and
  BatchNorm running statistic of both networks as gan_aec.dcgan.train_step does."""
  import optax  # pylint: disable=g-import-not-at-top
  from gan_aec.dcgan import model as dcgan_model  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(dcgan_model, 'DROPOUT_RATE', 0.0)
  x, rng, lr = images * 2 - 1, jax.random.key(1), 0.1
  state = dcgan.create_gan_state(dcgan.Generator(), dcgan.Discriminator(), tx=optax.sgd(lr),
                                 rng=jax.random.key(0), example_images=x)
  new_state, metrics = dcgan.train_step(state, {'image': x}, rng, real_label=0.9)
  z = dcgan.sample_latents(jax.random.split(rng, 4)[0], len(x), 100)  # The step's own draw.

  def port_networks(s):
    return (models.load_flax_params(models.Generator(dropout=0.0),
                                    jax.device_get(s.generator.params),
                                    jax.device_get(s.generator.batch_stats)),
            models.load_flax_params(models.Discriminator(dropout=0.0),
                                    jax.device_get(s.discriminator.params),
                                    jax.device_get(s.discriminator.batch_stats)))
  g, d = port_networks(state)
  before = [{k: v.clone() for k, v in n.state_dict().items()} for n in (g, d)]
  losses = train.dcgan_step(g, d, torch.optim.SGD(g.parameters(), lr),
                            torch.optim.SGD(d.parameters(), lr), models.to_nchw(x),
                            torch.from_numpy(np.asarray(z)), 0.9)
  np.testing.assert_allclose(losses, (metrics['d_loss'], metrics['g_loss']), rtol=1e-5)
  moved = 0
  for got, want, start in zip((g, d), port_networks(new_state), before):
    want = want.state_dict()
    for key, value in got.state_dict().items():
      if key.endswith('num_batches_tracked'):
        continue
      change, wanted = (value - start[key]).numpy(), (want[key] - start[key]).numpy()
      if np.abs(wanted).max() < 1e-6:  # A bias before a BatchNorm: no gradient, in both.
        assert np.abs(change).max() < 1e-6, key
        continue
      moved += 1  # Float32 sums in another order; PyTorch's running variance moves towards the
      # unbiased batch variance, n / (n - 1) of ours, with n >= 128 values per channel here.
      tolerance = 1e-2 if key.endswith('running_var') else 1e-3
      np.testing.assert_allclose(change, wanted, atol=tolerance * np.abs(wanted).max(),
                                 err_msg=key)
  assert moved >= 20  # Every weight, BatchNorm scale, offset and statistic but those biases.
