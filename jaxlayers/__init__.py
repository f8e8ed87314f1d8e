"""jaxlayers: neural-network layers for JAX as pure init/apply pairs over pytrees.

    import jax, jaxlayers as jl
    model = jl.serial(jl.Dense(128, activation="relu"), jl.Dense(10))
    params, state = model.init(jax.random.key(0), (32, 784))
    logits, state = model.apply(params, state, x)
"""

__version__ = "0.1.0"

from jaxlayers import activations as activations
from jaxlayers import initializers as initializers
from jaxlayers import losses as losses
from jaxlayers import regularizers as regularizers
from jaxlayers import testing as testing
from jaxlayers import train as train
from jaxlayers.core import Input as Input
from jaxlayers.core import Layer as Layer
from jaxlayers.core import Masked as Masked
from jaxlayers.core import Sequential as Sequential
from jaxlayers.core import count_params as count_params
from jaxlayers.core import fanout as fanout
from jaxlayers.core import output_shape as output_shape
from jaxlayers.core import parallel as parallel
from jaxlayers.core import repeat as repeat
from jaxlayers.core import residual as residual
from jaxlayers.core import serial as serial
from jaxlayers.core import summary as summary
from jaxlayers.train import EarlyStopping as EarlyStopping
from jaxlayers.train import fit as fit
from jaxlayers.layers.activation import Activation as Activation
from jaxlayers.layers.activation import PReLU as PReLU
from jaxlayers.layers.dense import Dense as Dense
from jaxlayers.layers.dropout import Dropout as Dropout
from jaxlayers.layers.merge import Add as Add
from jaxlayers.layers.merge import Concatenate as Concatenate
from jaxlayers.layers.merge import Multiply as Multiply
from jaxlayers.layers.norm import BatchNorm as BatchNorm
from jaxlayers.layers.norm import LayerNorm as LayerNorm
from jaxlayers.layers.shape import Flatten as Flatten
from jaxlayers.layers.shape import Reshape as Reshape

# Public layers (every one is in tests/registry.py) and functions, sorted.
LAYERS = (
    "Activation", "Add", "BatchNorm", "Concatenate", "Dense", "Dropout", "Flatten",
    "Input", "LayerNorm", "Multiply", "PReLU", "Reshape",
)
__all__ = sorted(LAYERS + (
    "EarlyStopping", "Layer", "Masked", "fit", "Sequential", "activations", "count_params", "fanout",
    "initializers", "losses", "output_shape", "parallel", "regularizers", "repeat",
    "residual", "serial", "summary", "testing", "train",
))
