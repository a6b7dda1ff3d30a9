"""Placeholder until the fast layer lands."""

import functools

import flax.linen as nn

ConvTranspose = functools.partial(
    nn.ConvTranspose, kernel_size=(4, 4), strides=(2, 2), padding="SAME", transpose_kernel=True
)
