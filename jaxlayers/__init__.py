"""jaxlayers: neural-network layers for JAX as pure init/apply pairs over pytrees.

    import jax, jaxlayers as jl
    model = jl.serial(jl.Dense(128, activation="relu"), jl.Dense(10))
    params, state = model.init(jax.random.key(0), (32, 784))
    logits, state = model.apply(params, state, x)
"""

from jaxlayers._version import __version__ as __version__

from jaxlayers import activations as activations
from jaxlayers import attention as attention
from jaxlayers import callbacks as callbacks
from jaxlayers import checkpoint as checkpoint
from jaxlayers import distributed as distributed
from jaxlayers import initializers as initializers
from jaxlayers import interop as interop
from jaxlayers import losses as losses
from jaxlayers import metrics as metrics
from jaxlayers import models as models
from jaxlayers import precision as precision
from jaxlayers import regularizers as regularizers
from jaxlayers import testing as testing
from jaxlayers import train as train
from jaxlayers._combinators import Input as Input
from jaxlayers._combinators import Sequential as Sequential
from jaxlayers._combinators import fanout as fanout
from jaxlayers._combinators import parallel as parallel
from jaxlayers._combinators import repeat as repeat
from jaxlayers._combinators import residual as residual
from jaxlayers._combinators import serial as serial
from jaxlayers._compose import compose as compose
from jaxlayers._freeze import frozen as frozen
from jaxlayers._freeze import label_params as label_params
from jaxlayers._freeze import path_mask as path_mask
from jaxlayers._paths import path_strings as path_strings
from jaxlayers._summary import Summary as Summary
from jaxlayers._summary import SummaryRow as SummaryRow
from jaxlayers._summary import summary as summary
from jaxlayers.grad_check import GradcheckError as GradcheckError
from jaxlayers.grad_check import gradcheck as gradcheck
from jaxlayers.grad_check import gradcheck_layer as gradcheck_layer
from jaxlayers.checkpoint import CheckpointManager as CheckpointManager
from jaxlayers.checkpoint import restore as restore
from jaxlayers.checkpoint import save as save
from jaxlayers.core import Layer as Layer
from jaxlayers.core import Masked as Masked
from jaxlayers.core import count_params as count_params
from jaxlayers.core import output_shape as output_shape
from jaxlayers.models._gpt import generate as generate
from jaxlayers.precision import DynamicLossScale as DynamicLossScale
from jaxlayers.precision import Policy as Policy
from jaxlayers.precision import mixed_precision as mixed_precision
from jaxlayers.callbacks import EarlyStopping as EarlyStopping
from jaxlayers._fit import evaluate as evaluate
from jaxlayers._fit import fit as fit
from jaxlayers._fit import predict as predict
from jaxlayers.train import TrainState as TrainState
from jaxlayers.layers.activation import Activation as Activation
from jaxlayers.layers.activation import PReLU as PReLU
from jaxlayers.layers.cells import Cell as Cell
from jaxlayers.layers.cells import GRUCell as GRUCell
from jaxlayers.layers.cells import LSTMCell as LSTMCell
from jaxlayers.layers.cells import SimpleRNNCell as SimpleRNNCell
from jaxlayers.layers.dense import Dense as Dense
from jaxlayers.layers.embedding import Embedding as Embedding
from jaxlayers.layers.embedding import check_ids as check_ids
from jaxlayers.layers.recurrent import GRU as GRU
from jaxlayers.layers.recurrent import LSTM as LSTM
from jaxlayers.layers.recurrent import SimpleRNN as SimpleRNN
from jaxlayers.layers.recurrent import reset_state as reset_state
from jaxlayers.layers.wrappers import Bidirectional as Bidirectional
from jaxlayers.layers import crf as crf
from jaxlayers.layers.crf import CRF as CRF
from jaxlayers.layers.crf import CRFOutput as CRFOutput
from jaxlayers.layers.conv import Conv1D as Conv1D
from jaxlayers.layers.conv import Conv2D as Conv2D
from jaxlayers.layers.conv import Conv3D as Conv3D
from jaxlayers.layers.conv import DepthwiseConv2D as DepthwiseConv2D
from jaxlayers.layers.conv import SeparableConv1D as SeparableConv1D
from jaxlayers.layers.conv import SeparableConv2D as SeparableConv2D
from jaxlayers.layers.conv import Conv1DTranspose as Conv1DTranspose
from jaxlayers.layers.conv import Conv2DTranspose as Conv2DTranspose
from jaxlayers.layers.conv import Conv3DTranspose as Conv3DTranspose
from jaxlayers.layers.pool import MaxPool1D as MaxPool1D
from jaxlayers.layers.pool import MaxPool2D as MaxPool2D
from jaxlayers.layers.pool import MaxPool3D as MaxPool3D
from jaxlayers.layers.pool import AvgPool1D as AvgPool1D
from jaxlayers.layers.pool import AvgPool2D as AvgPool2D
from jaxlayers.layers.pool import AvgPool3D as AvgPool3D
from jaxlayers.layers.pool import GlobalMaxPool1D as GlobalMaxPool1D
from jaxlayers.layers.pool import GlobalMaxPool2D as GlobalMaxPool2D
from jaxlayers.layers.pool import GlobalMaxPool3D as GlobalMaxPool3D
from jaxlayers.layers.pool import GlobalAvgPool1D as GlobalAvgPool1D
from jaxlayers.layers.pool import GlobalAvgPool2D as GlobalAvgPool2D
from jaxlayers.layers.pool import GlobalAvgPool3D as GlobalAvgPool3D
from jaxlayers.layers.pool import AdaptiveAvgPool2D as AdaptiveAvgPool2D
from jaxlayers.layers.resample import UpSampling1D as UpSampling1D
from jaxlayers.layers.resample import UpSampling2D as UpSampling2D
from jaxlayers.layers.resample import UpSampling3D as UpSampling3D
from jaxlayers.layers.resample import Resize as Resize
from jaxlayers.layers.resample import ZeroPadding1D as ZeroPadding1D
from jaxlayers.layers.resample import ZeroPadding2D as ZeroPadding2D
from jaxlayers.layers.resample import ZeroPadding3D as ZeroPadding3D
from jaxlayers.layers.resample import Cropping1D as Cropping1D
from jaxlayers.layers.resample import Cropping2D as Cropping2D
from jaxlayers.layers.resample import Cropping3D as Cropping3D
from jaxlayers.layers.lrn import CrossChannelNormalization as CrossChannelNormalization
from jaxlayers.layers.spatial_dropout import SpatialDropout1D as SpatialDropout1D
from jaxlayers.layers.spatial_dropout import SpatialDropout2D as SpatialDropout2D
from jaxlayers.layers.spatial_dropout import SpatialDropout3D as SpatialDropout3D
from jaxlayers.layers.dropout import Dropout as Dropout
from jaxlayers.layers.attention import Attention as Attention
from jaxlayers.layers.attention import MultiHeadAttention as MultiHeadAttention
from jaxlayers.layers.positional import PositionEmbedding as PositionEmbedding
from jaxlayers.layers.positional import SinusoidalPositionalEncoding as SinusoidalPositionalEncoding
from jaxlayers.layers.transformer import FeedForward as FeedForward
from jaxlayers.layers.transformer import TransformerDecoder as TransformerDecoder
from jaxlayers.layers.transformer import TransformerDecoderBlock as TransformerDecoderBlock
from jaxlayers.layers.transformer import TransformerEncoder as TransformerEncoder
from jaxlayers.layers.transformer import TransformerEncoderBlock as TransformerEncoderBlock
from jaxlayers.layers.blocks import Branches as Branches
from jaxlayers.layers.blocks import Identity as Identity
from jaxlayers.layers.blocks import Scale as Scale
from jaxlayers.layers.blocks import SqueezeExcitation as SqueezeExcitation
from jaxlayers.layers.blocks import StochasticDepth as StochasticDepth
from jaxlayers.layers.merge import Add as Add
from jaxlayers.layers.merge import Concatenate as Concatenate
from jaxlayers.layers.merge import Multiply as Multiply
from jaxlayers.layers.norm import BatchNorm as BatchNorm
from jaxlayers.layers.norm import LayerNorm as LayerNorm
from jaxlayers.layers.shape import Flatten as Flatten
from jaxlayers.layers.shape import Reshape as Reshape

__all__ = sorted([
    # layers (every one is in tests/registry.py; a test over __all__ checks it)
    "Activation", "AdaptiveAvgPool2D", "Add", "Attention", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "BatchNorm", "Bidirectional", "Branches", "CRF", "Concatenate", "Conv1D", "Conv1DTranspose",
    "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "Cropping1D", "Cropping2D",
    "Cropping3D", "CrossChannelNormalization", "Dense", "DepthwiseConv2D", "Dropout",
    "Embedding", "FeedForward", "Flatten", "GRU", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "Identity", "Input", "LSTM",
    "LayerNorm", "MaxPool1D", "MaxPool2D", "MaxPool3D", "MultiHeadAttention", "Multiply",
    "PReLU", "PositionEmbedding", "Reshape", "Resize", "Scale", "SeparableConv1D", "SeparableConv2D", "SimpleRNN",
    "SinusoidalPositionalEncoding", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "SqueezeExcitation", "StochasticDepth", "TransformerDecoder",
    "TransformerDecoderBlock", "TransformerEncoder", "TransformerEncoderBlock", "UpSampling1D", "UpSampling2D", "UpSampling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D",
    # combinators
    "Sequential", "compose", "fanout", "parallel", "repeat", "residual", "serial",
    # mixed precision: a dtype policy over a whole model, loss scaling for float16
    "DynamicLossScale", "Policy", "mixed_precision", "precision",
    # cells for a scan of your own
    "Cell", "GRUCell", "LSTMCell", "SimpleRNNCell",
    # types, functions and modules
    "CRFOutput", "CheckpointManager", "EarlyStopping", "GradcheckError", "Layer", "Masked",
    "Summary", "SummaryRow", "TrainState", "activations", "attention", "callbacks",
    "check_ids", "checkpoint", "crf", "distributed", "evaluate", "count_params", "fit",
    "frozen", "generate", "gradcheck",
    "gradcheck_layer", "initializers", "interop", "label_params", "losses", "metrics",
    "models",
    "output_shape", "path_mask", "path_strings", "predict", "regularizers", "reset_state", "restore", "save", "summary",
    "testing",
    "train",
])
