"""The model and data of the two-process test (tests/test_multihost.py and its worker)."""

import functools

import numpy as np

import jaxlayers as jl

CE = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
N, BATCH, EPOCHS = 40, 8, 2  # 20 rows a process: 2 steps of 8 + 8 a epoch, 4 rows dropped


def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, 5)).astype(np.float32)
    return x, (x[:, :3].argmax(1)).astype(np.int32)


def model():
    # BatchNorm: its batch statistics must be the global batch's, across both processes
    return jl.serial(jl.Dense(12, use_bias=False), jl.BatchNorm(), jl.Activation("tanh"),
                     jl.Dense(3))

# seconds: the coordinator waits this long for the other process (jax's default is 300),
# and the test kills both processes this long after the later one started
TIMEOUT = 50
