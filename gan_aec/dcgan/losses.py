"""GAN losses as small pure functions of the discriminator's logits.

Each takes keyword arguments only: the discriminator's logits of real images [B] and of generated
images [B] (float, any range), and `real_label`, which smooths the discriminator's real targets
(the report: 0.9; 1.0 is the standard form). Each returns (d_loss, g_loss), two float32 scalars
(means over the batch) for the discriminator and the generator to minimise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def non_saturating(*, real_logits: jax.Array, fake_logits: jax.Array,
                   real_label: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Sigmoid cross-entropy GAN loss (Goodfellow et al.), the generator's non-saturating form.

  Returns (d_loss, g_loss): d_loss = CE(D(x), real_label) + CE(D(G(z)), 0),
  g_loss = CE(D(G(z)), 1) = -log sigmoid(D(G(z))).
  """
  d_real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.full_like(real_logits, real_label))
  d_fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
  g = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits))
  return d_real.mean() + d_fake.mean(), g.mean()


def hinge(*, real_logits: jax.Array, fake_logits: jax.Array,
          real_label: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Hinge loss (Lim & Ye; SAGAN): d = relu(1 - D(x)) + relu(1 + D(G(z))), g = -D(G(z)).

  real_label scales the real margin (1 - real_label * D(x)); 1.0 is the standard form.
  """
  d_loss = (jax.nn.relu(1.0 - real_label * real_logits).mean()
            + jax.nn.relu(1.0 + fake_logits).mean())
  return d_loss, -fake_logits.mean()


def least_squares(*, real_logits: jax.Array, fake_logits: jax.Array,
                  real_label: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Least-squares GAN (Mao et al.): d = (D(x) - real_label)^2 + D(G(z))^2, g = (D(G(z)) - 1)^2.

  Both halves are halved, as in the paper.
  """
  d_loss = 0.5 * (jnp.square(real_logits - real_label).mean() + jnp.square(fake_logits).mean())
  return d_loss, 0.5 * jnp.square(fake_logits - 1.0).mean()


LOSSES = {'non_saturating': non_saturating, 'hinge': hinge, 'least_squares': least_squares}
"""The losses by name: the values of gan_aec.dcgan.train_step's `loss` argument."""
