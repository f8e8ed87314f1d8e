"""Model builders as `jl.Layer`s with readable param paths: the classic CNNs (their
parameter counts equal torchvision's), the transformer family (gpt, transformer, vit,
seq2seq_attention), and the curriculum's other models (word2vec, the CTC tagger, ...).

    import jax, jaxlayers as jl
    from jaxlayers import models
    model = models.resnet18(num_classes=10)
    params, state = model.init(jax.random.key(0), (8, 32, 32, 3))
    logits, state = model.apply(params, state, x, key=key, training=True)

Every classifier returns logits (no softmax); a CNN's parameter count equals the
reference implementation's (torchvision's builder where there is one) with 1000 classes.

Generative models and segmentation (seed 003 Q16's uses of transposed convolution, seed
004's applications), sized for the 8×8 digits and small generated images:
`dense_autoencoder`, `conv_autoencoder`, `vae` (with `vae_loss`, `gaussian_kl`,
`reparameterize`, `vae_generate`), `dcgan` (with `dcgan_steps`, `train_dcgan`), `unet`
(logits per pixel), and the figures `plot_reconstructions`, `plot_samples`,
`plot_segmentation`.
"""

from jaxlayers.models._alexnet import alexnet as alexnet
from jaxlayers.models._autoencoder import conv_autoencoder as conv_autoencoder
from jaxlayers.models._autoencoder import dense_autoencoder as dense_autoencoder
from jaxlayers.models._autoencoder import gaussian_kl as gaussian_kl
from jaxlayers.models._autoencoder import reparameterize as reparameterize
from jaxlayers.models._autoencoder import vae as vae
from jaxlayers.models._autoencoder import vae_generate as vae_generate
from jaxlayers.models._autoencoder import vae_loss as vae_loss
from jaxlayers.models._dcgan import DCGAN as DCGAN
from jaxlayers.models._dcgan import dcgan as dcgan
from jaxlayers.models._dcgan import dcgan_init as dcgan_init
from jaxlayers.models._dcgan import dcgan_steps as dcgan_steps
from jaxlayers.models._dcgan import discriminator_loss as discriminator_loss
from jaxlayers.models._dcgan import generator_loss as generator_loss
from jaxlayers.models._dcgan import train_dcgan as train_dcgan
from jaxlayers.models._densenet import densenet121 as densenet121
from jaxlayers.models._densenet import densenet161 as densenet161
from jaxlayers.models._densenet import densenet169 as densenet169
from jaxlayers.models._densenet import densenet201 as densenet201
from jaxlayers.models._efficientnet import efficientnet_b0 as efficientnet_b0
from jaxlayers.models._efficientnet import efficientnet_b1 as efficientnet_b1
from jaxlayers.models._efficientnet import efficientnet_b2 as efficientnet_b2
from jaxlayers.models._efficientnet import efficientnet_b3 as efficientnet_b3
from jaxlayers.models._efficientnet import efficientnet_b4 as efficientnet_b4
from jaxlayers.models._efficientnet import efficientnet_b5 as efficientnet_b5
from jaxlayers.models._efficientnet import efficientnet_b6 as efficientnet_b6
from jaxlayers.models._efficientnet import efficientnet_b7 as efficientnet_b7
from jaxlayers.models._googlenet import googlenet as googlenet
from jaxlayers.models._gpt import generate as generate
from jaxlayers.models._gpt import gpt as gpt
from jaxlayers.models._lenet import lenet5 as lenet5
from jaxlayers.models._mobilenet import mobilenet_v2 as mobilenet_v2
from jaxlayers.models._plots import plot_reconstructions as plot_reconstructions
from jaxlayers.models._plots import plot_samples as plot_samples
from jaxlayers.models._plots import plot_segmentation as plot_segmentation
from jaxlayers.models._resnet import resnet18 as resnet18
from jaxlayers.models._resnet import resnet34 as resnet34
from jaxlayers.models._resnet import resnet50 as resnet50
from jaxlayers.models._resnet import resnet101 as resnet101
from jaxlayers.models._resnet import resnet152 as resnet152
from jaxlayers.models._seq2seq import greedy_decode as greedy_decode
from jaxlayers.models._seq2seq import seq2seq_attention as seq2seq_attention
from jaxlayers.models._transformer import transformer as transformer
from jaxlayers.models._unet import unet as unet
from jaxlayers.models._vgg import vgg11 as vgg11
from jaxlayers.models._vit import vit as vit
from jaxlayers.models._vit import vit_b16 as vit_b16
from jaxlayers.models._vgg import vgg13 as vgg13
from jaxlayers.models._vgg import vgg16 as vgg16
from jaxlayers.models._vgg import vgg19 as vgg19
from jaxlayers.models._ctc import ctc_greedy_decode as ctc_greedy_decode
from jaxlayers.models._ctc import ctc_loss as ctc_loss
from jaxlayers.models._ctc import ctc_tagger as ctc_tagger
from jaxlayers.models._word2vec import word2vec as word2vec
from jaxlayers.models._word2vec import word2vec_loss as word2vec_loss
from jaxlayers.models._word2vec import build_vocab as build_vocab
from jaxlayers.models._word2vec import skipgram_pairs as skipgram_pairs
from jaxlayers.models._word2vec import unigram_probs as unigram_probs
from jaxlayers.models._word2vec import skipgram_batches as skipgram_batches
from jaxlayers.models._word2vec import nearest_neighbours as nearest_neighbours

__all__ = sorted([
    "alexnet", "densenet121", "densenet161", "densenet169", "densenet201",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "generate", "googlenet", "gpt", "greedy_decode", "lenet5", "mobilenet_v2", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "seq2seq_attention", "transformer", "vgg11", "vgg13", "vgg16", "vgg19", "vit", "vit_b16",
    "ctc_greedy_decode", "ctc_loss", "ctc_tagger",
    "build_vocab", "nearest_neighbours", "skipgram_batches", "skipgram_pairs", "unigram_probs", "word2vec", "word2vec_loss",
    # generative models and segmentation (issue 14)
    "DCGAN", "conv_autoencoder", "dcgan", "dcgan_init", "dcgan_steps", "dense_autoencoder",
    "discriminator_loss", "gaussian_kl", "generator_loss", "plot_reconstructions",
    "plot_samples", "plot_segmentation", "reparameterize", "train_dcgan", "unet", "vae",
    "vae_generate", "vae_loss",
])
