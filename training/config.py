"""Training configuration: a plain dataclass, importable without Keras (the CLI reads its defaults)."""

import dataclasses

__all__ = ["SHARPENERS", "DISTRIBUTIONS", "DEFAULT_DENSE_WIDTHS", "DEFAULT_NHOT", "DEFAULT_CONV", "DEFAULT_CONV_DROPOUT",
           "DEFAULT_AUTOENCODER_WIDTHS", "AUTOENCODER_DEFAULTS", "CLASSIFIER_DEFAULTS", "CONV_DEFAULTS", "TrainConfig"]

SHARPENERS = ("adaptive", "simple", "none")
OPTIMIZERS = ("adam", "sgd")
DISTRIBUTIONS = ("none", "data-parallel")
# README "The default recipe": 784-256-64-80 with dropout 0.2 and 80 straight-through epochs reaches
# 89.39-89.69% as 4-bit integers (two seeds, both backends) at 1.04x the old default's float epoch;
# 784-512-128-80 reached 89.56-89.84% with dropout 0.3 and 40 epochs at 1.79x
DEFAULT_DENSE_WIDTHS = (256, 64)
# N-hot output units per class: 8 for dense (measured 0.0 to +0.6 points over 4) and for conv (with the
# 512-unit layer below)
DEFAULT_NHOT = {"dense": 8, "conv": 8, "autoencoder": None}
# README "The default recipe": 32c5-p2-64c5-p2-512-80 with 60 straight-through epochs reaches 92.04% as 4-bit
# integers, where 256-40 with 40 reached 91.33%; it takes 179 of a ULX3S-85F's 208 block RAMs
DEFAULT_CONV = {"filters": (32, 64), "kernel": 5, "padding": "valid", "widths": (512,)}
# dropout after each conv stage's pool, conv only (README: 91.33% against 90.67% without, at 4 bits)
DEFAULT_CONV_DROPOUT = 0.25
# hidden widths; the output is one unit per input pixel (README: 94.3% pixel accuracy, 90.8% with
# 256,64,256; 176 of the ULX3S-85F's 208 block RAMs)
DEFAULT_AUTOENCODER_WIDTHS = (384, 192, 384)
LOSSES = ("mse", "bce")                       # the autoencoder's reconstruction loss
# hone train's defaults for --arch autoencoder where they differ from the classifiers' (README: dropout
# costs it 1.6 points of pixel accuracy before sharpening; with the output layer training on its
# ramp, the straight-through epochs once sharp gain about 0.03 points each, and 10 of them are enough)
AUTOENCODER_DEFAULTS = {"dropout": 0.0, "start_epoch": 10, "finetune_epochs": 10, "output_ramp": True,
                        "epochs": 80}
# the dense classifier's (README "The default recipe": the output layer on its ramp, dropout 0.2 and 80
# straight-through epochs take 784-256-64-80 from 88.89-89.33% to 89.39-89.69% as 4-bit integers)
CLASSIFIER_DEFAULTS = {"dropout": 0.2, "start_epoch": 15, "finetune_epochs": 80, "output_ramp": True, "epochs": 120}
# conv's (its 92.04% was measured with these: dropout 0.3, 60 straight-through epochs, the output layer off
# its ramp)
CONV_DEFAULTS = {"dropout": 0.3, "start_epoch": 15, "finetune_epochs": 60, "output_ramp": False, "epochs": 100}


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are hone's tuned recipe (see README)."""

    dataset: str = "fashion-mnist"
    arch: str = "dense"
    binarize: bool = False
    nhot: int | None = None           # default: DEFAULT_NHOT[arch]
    output_width: int | None = None   # default: classes * nhot
    widths: tuple | None = None
    filters: tuple | None = None
    kernel: int | None = None
    padding: str | None = None        # conv: "valid" (default) or "same"
    batch_norm: bool = True
    dropout: float | None = None      # default per architecture: CLASSIFIER_DEFAULTS, AUTOENCODER_DEFAULTS
    conv_dropout: float | None = None  # after each conv stage's pool: DEFAULT_CONV_DROPOUT for conv, else 0
    decode_scale: float = 0.25
    gradient: str = "straight-through"
    augment: bool = False             # flips + 2-pixel shifts: only where a flip keeps the class
    activation: str = "brelu"
    loss: str = "mse"                 # autoencoder: reconstruction loss, "mse" or "bce"
    output_ramp: bool | None = None   # the output layer trains on its ramp (Spiking ramp_in_training)
    # The network file: what hone export writes by default, and what quantization-aware training trains
    weight_bits: int = 4
    input_bits: int | None = None     # default: 1 for --binarize, else 8
    qat: bool = True                  # train as the integer network once sharp (see hone.training.qat)
    sharpener: str = "simple"
    bottom_up: bool = True
    epochs: int | None = None         # upper bound, the sharpener ends training once sharp: 80 (conv: 100)
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"           # "sgd": SGD with momentum 0.9 (wants a larger learning rate, e.g. 0.01)
    ema_momentum: float = 0.0         # > 0: the trained weights are their exponential moving average (Keras' use_ema)
    seed: int = 0
    distribution: str = "none"        # "data-parallel": every device (see hone.training.distribute)
    # AdaptiveSharpener
    min_init_epochs: int = 6
    rate: float = 0.25
    critical: float = 0.75
    cz_rate: float = 0.1
    patience: int = 1
    sig_increase: float = 0.1
    sig_decrease: float = 0.1
    # SimpleSharpener
    start_epoch: int | None = None
    steps: int = 2
    epochs_per_step: float = 1.0
    # both
    settle_epochs: int = 1
    finetune_epochs: int | None = None

    def __post_init__(self):
        defaults = {"autoencoder": AUTOENCODER_DEFAULTS, "conv": CONV_DEFAULTS}.get(self.arch, CLASSIFIER_DEFAULTS)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.nhot is None:
            self.nhot = DEFAULT_NHOT.get(self.arch) or 4   # autoencoder: unused
        if self.conv_dropout is None:
            self.conv_dropout = DEFAULT_CONV_DROPOUT if self.arch == "conv" else 0.0
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {self.distribution!r}; expected one of "
                             f"{', '.join(DISTRIBUTIONS)}")
        if self.sharpener not in SHARPENERS:
            raise ValueError(f"unknown sharpener {self.sharpener!r}; expected one of {', '.join(SHARPENERS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        for name in ("weight_bits", "input_bits"):
            value = getattr(self, name)
            if value is None and name == "input_bits":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise ValueError(f"`{name}` must be an integer in 1..16. Received: {name}={value!r}")
        if self.binarize and self.input_bits not in (None, 1):   # the model sees binary pixels only
            raise ValueError(f"`input_bits` must be 1 (or None) with `binarize=True`. Received: "
                             f"input_bits={self.input_bits}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: learning_rate={self.learning_rate}")
        if not 0 <= self.ema_momentum < 1:
            raise ValueError(f"`ema_momentum` must be in [0, 1) (0: off). Received: ema_momentum={self.ema_momentum}")

    @property
    def network_input_bits(self):
        """The pixel bits of the network file: ``input_bits``, else 1 for binarized input, else 8."""
        return self.input_bits or (1 if self.binarize else 8)

    def make_optimizer(self):
        """The configured Keras optimizer: Adam, or SGD with momentum 0.9, at ``learning_rate``; with
        ``ema_momentum`` it keeps an exponential moving average of the weights, which replaces them when
        training ends (Keras' ``use_ema``)."""
        import keras

        ema = {"use_ema": self.ema_momentum > 0, "ema_momentum": self.ema_momentum or 0.99}
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(self.learning_rate, momentum=0.9, **ema)
        return keras.optimizers.Adam(self.learning_rate, **ema)

    def make_sharpener(self, verbose=False):
        """The configured sharpener callback (None for ``sharpener="none"``).

        Both kinds are built, so an invalid setting is reported whichever sharpener is selected.
        """
        from .sharpeners import AdaptiveSharpener, SimpleSharpener

        common = dict(bottom_up=self.bottom_up, settle_epochs=self.settle_epochs,
                      finetune_epochs=self.finetune_epochs, verbose=verbose)
        sharpeners = {
            "adaptive": AdaptiveSharpener(
                min_init_epochs=self.min_init_epochs, rate=self.rate, critical=self.critical,
                cz_rate=self.cz_rate, patience=self.patience, sig_increase=self.sig_increase,
                sig_decrease=self.sig_decrease, **common),
            "simple": SimpleSharpener(start_epoch=self.start_epoch, steps=self.steps,
                                      epochs_per_step=self.epochs_per_step, **common),
        }
        return sharpeners.get(self.sharpener)
