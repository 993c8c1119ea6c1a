"""`projection`: cGAN with a projection discriminator (Miyato & Koyama 2018) on SNGAN's ResNets at 32 px.
G's batch norms are class-conditional (a gain and bias per class); D, spectrally normalised, scores
linear(phi(x)) + <embed(y), phi(x)>, phi(x) its ReLU'd features summed over positions. Hinge loss."""

from __future__ import annotations

from functools import partial

from gantools.models.dcgan import RESOLUTIONS
from gantools.models.sngan import build_discriminator, build_generator
from gantools.registry import ModelSpec, register_model


register_model(ModelSpec(
    name="projection",
    description="cGAN with a projection discriminator (Miyato & Koyama 2018): conditional batch norm in G, "
                "<embed(y), phi(x)> in a spectrally normalised ResNet D; hinge loss",
    data_kind="image",
    # SNGAN's networks with classes (gantools.models.layers: ResNetGenerator, ResNetDiscriminator)
    build_generator=partial(build_generator, conditional=True),
    build_discriminator=partial(build_discriminator, conditional=True),
    conditional=True,
    default_loss="hinge",
    resolutions=RESOLUTIONS,
    # the 32 px recipe of Mimicry's cGAN-PD (SNGAN's CIFAR-10 ResNets, as the paper's code): z 128, G 256 and
    # D 128 channels, Adam 2e-4 with betas (0, 0.9), 5 D steps per G step (n_dis, also the paper's), batch 64.
    # steps: the toolkit's usual 5000 G steps (Mimicry trains 100k). At these rates G takes up the class slowly
    # (its class gains start at 1 and move at most 2e-4 a step): on MNIST at 16 channels and 1 D step, 27% of samples
    # read as the asked digit after 3,000 steps, 98.9% after 2,000 with Adam 1e-3 for both (bench/RESULTS.md
    # "conditional": a CPU budget, with less variety within a class; not the paper's rates).
    defaults={"z_dim": 128, "ngf": 256, "ndf": 128, "batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4,
              "betas": [0.0, 0.9], "n_critic": 5, "steps": 5000, "updates": "alternating"},
))
