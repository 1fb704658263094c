"""A per-dataset classifier whose penultimate layer is the feature space of the sample-quality scores.

The Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium") and precision/recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models") compare images in the features of a network trained to classify natural images.
Inception-v3's ImageNet features say little about 8×8 or 28×28 grey digits and need weights that may not be at
hand; as for MNIST-like data in the literature (e.g. the "Fréchet LeNet distance"), pvae trains a small
convolutional classifier on each dataset's own grey-level training split, once, with a fixed seed, caches it beside
the data, and reports its test accuracy: features are only as meaningful as that accuracy.

The user's own data that are not images (a labelled table, counts) get the same scores in the features of a
small multilayer perceptron trained the same way on the same labels (counts read through log1p, as pvae's
encoders read them): the feature classifier of ``pvae quality`` on a labelled table.

The network (:class:`FeatureClassifier`) is three 3×3 convolution blocks, an adaptive average pool to 4×4, a dense
layer of ``feature_dim`` units (the features, after their ReLU) and the class layer; it takes any ``(C, H, W)``.
Measured with the defaults (seed 0, data seed 0, one thread of a busy 2-core CPU): digits 0.994 test accuracy
(30 epochs, 6 s), Fashion-MNIST 0.921 (7 epochs, 171 s), dSprites' shapes 0.9999 (60,000 training images, 6 epochs,
146 s).
"""

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pvae import data
from pvae.base.files import atomic_write
from pvae.data.idx import IDX_DATASETS, default_data_dir

#: Bump when anything that changes a trained classifier changes (network, training recipe): it is part of the
#: cache key, so old cached classifiers are no longer found and are retrained.
CLASSIFIER_VERSION = 1
#: Output channels of the three convolution blocks.
CHANNELS = (16, 32, 64)
#: A block max-pools its map while the short side exceeds this many pixels.
POOL_ABOVE = 8
#: Side of the feature map after the adaptive pool.
POOLED = 4
#: Width of the penultimate (feature) layer.
FEATURE_DIM = 128
#: Training datapoints used at most: larger training splits (dSprites' 722,280) train on a fixed-seed subset.
MAX_TRAIN = 60_000
#: Adam's learning rate.
LEARNING_RATE = 2e-3
#: Optimizer steps that default ``epochs`` aim for (about 3,000: Fashion-MNIST's test accuracy stops rising there).
TARGET_STEPS = 3000
#: Bounds of the default ``epochs``.
EPOCH_RANGE = (2, 30)
#: Widths of the hidden layers of the network for vectors ``(D,)``.
HIDDEN = (256, 256)
#: Bounds of the default ``epochs`` for vectors: tables are small (178 rows of wine), so an epoch is a step or two.
VECTOR_EPOCH_RANGE = (2, 500)
#: The shape of one image of each dataset :func:`pvae.data.load` knows (part of the cache key).
X_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    **{name: (1, 28, 28) for name in IDX_DATASETS},
    "dsprites": (1, 64, 64),
}
_FORMAT = "pvae-classifier"


class FeatureClassifier(nn.Module):
    """A small classifier of images ``(C, H, W)`` or vectors ``(D,)``; its penultimate layer gives the features.

    Each of the three blocks is a 3×3 convolution (padding 1), batch normalization (Ioffe & Szegedy 2015: 0.921
    rather than 0.898 Fashion-MNIST test accuracy at the same budget) and a ReLU, followed by a 2×2 max pool while the
    map is over 8 pixels on its short side (8×8 digits never, 28×28 twice); an image whose short side
    exceeds 32 pixels (64×64 dSprites) is first convolved with stride 2, then pooled twice; then an
    adaptive average pool to 4×4, a dense layer of ``feature_dim`` units with a ReLU (:meth:`features`) and the
    class layer (:meth:`forward`).

    A vector ``(D,)`` goes instead through the dense layers of :data:`HIDDEN`, each with batch normalization and a
    ReLU, then the same feature and class layers.

    :param x_shape: ``(C, H, W)`` of one image or ``(D,)`` of one vector.
    :param num_classes: number of classes.
    :param feature_dim: width of the feature layer.
    :param channels: output channels of the convolution blocks.
    :param log1p_input: read ``log(1 + x)`` rather than ``x`` (counts, whose scale spans orders of magnitude).
    :param info: metadata of the training (``dataset``, ``data_seed``, ``test_accuracy``, ``epochs``, ``seed``,
        ``train_size``, ``seconds``); :func:`train_classifier` fills it.
    :raises ValueError: when ``x_shape`` is neither ``(C, H, W)`` nor ``(D,)``, or ``num_classes`` < 2.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        num_classes: int,
        feature_dim: int = FEATURE_DIM,
        channels: Sequence[int] = CHANNELS,
        info: dict | None = None,
        log1p_input: bool = False,
    ):
        super().__init__()
        if len(x_shape) not in (1, 3) or min(x_shape) < 1:
            raise ValueError(
                f"a FeatureClassifier takes images (C, H, W) or vectors (D,), got x_shape {tuple(x_shape)}"
            )
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}: features need labelled data")
        self.x_shape = tuple(int(s) for s in x_shape)
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.log1p_input = bool(log1p_input)
        self.info = dict(info or {})
        if len(self.x_shape) == 1:
            self.body, width = _dense_body(self.x_shape[0])
        else:
            self.body, width = _conv_body(self.x_shape, channels)
        self.dense = nn.Linear(width, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The penultimate layer after its ReLU: images ``(n, C, H, W)`` → ``(n, feature_dim)``.

        :param images: images in [0, 1] (or vectors as the model sees them) of this classifier's ``x_shape``.
        """
        x = images.log1p() if self.log1p_input else images
        return F.relu(self.dense(self.body(x).flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(n, num_classes)`` of images ``(n, C, H, W)``.

        :param images: images in [0, 1] of this classifier's ``x_shape``.
        """
        return self.head(self.features(images))


def _conv_body(x_shape: tuple[int, int, int], channels: Sequence[int]) -> tuple[nn.Module, int]:
    """The convolution blocks of an image classifier, and the width of their flattened output."""
    c, h, w = x_shape
    layers: list[nn.Module] = []
    for i, width in enumerate(channels):
        stride = 2 if i == 0 and min(h, w) > 32 else 1  # 64×64 dSprites: a third of the cost, same accuracy
        layers += [nn.Conv2d(c, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        if min(h, w) > POOL_ABOVE:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = width
    layers.append(nn.AdaptiveAvgPool2d(POOLED))
    return nn.Sequential(*layers), c * POOLED * POOLED


def _dense_body(d: int) -> tuple[nn.Module, int]:
    """The hidden layers of a vector classifier, and the width of their output."""
    layers: list[nn.Module] = []
    for width in HIDDEN:
        layers += [nn.Linear(d, width), nn.BatchNorm1d(width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers), d


def default_epochs(train_size: int, batch_size: int = 128, vectors: bool = False) -> int:
    """Epochs that make about :data:`TARGET_STEPS` optimizer steps, within :data:`EPOCH_RANGE`
    (:data:`VECTOR_EPOCH_RANGE` for vectors).

    :param train_size: training datapoints.
    :param batch_size: datapoints per step.
    :param vectors: the datapoints are vectors (tables are small: more epochs).
    """
    low, high = VECTOR_EPOCH_RANGE if vectors else EPOCH_RANGE
    return min(high, max(low, round(TARGET_STEPS * batch_size / train_size)))


def train_classifier(
    dataset: data.Dataset, *, epochs: int | None = None, seed: int = 0, batch_size: int = 128, progress: bool = True
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on the grey-level training split with Adam and a fixed seed.

    Training splits larger than :data:`MAX_TRAIN` are subsampled with the seed; the learning rate decays to zero
    on a cosine. The accuracy on the test split, the sizes and the seconds spent training go into the
    classifier's ``info`` (its ``data_seed`` stays None: a :class:`~pvae.data.Dataset` does not know it;
    :func:`load_classifier` fills it). The same seed on the same machine gives the same classifier bit for bit.

    :param dataset: the dataset, loaded with ``binarize="none"`` (grey levels; dSprites is binary anyway).
    :param epochs: passes over the training datapoints (:func:`default_epochs` when None).
    :param seed: seed of the initial weights, the subsample and the batch order.
    :param batch_size: datapoints per step.
    :param progress: show a tqdm bar.
    :raises ValueError: for a binarized dataset, a dataset without labels, or a bad ``epochs``/``batch_size``.
    """
    if dataset.binarize != "none":
        raise ValueError(
            f"train_classifier trains on grey levels, got a dataset binarized {dataset.binarize!r}: "
            "load it with binarize='none'"
        )
    if not dataset.has_labels:
        raise ValueError(
            f"{dataset.name} has no labels, and a feature classifier learns from them: give the label column "
            "(--label-column NAME, or y= to from_arrays)"
        )
    if not dataset.train.fully_labelled or not dataset.test.fully_labelled:
        raise ValueError("train_classifier needs every training and test label: load the dataset without labels=N")
    if epochs is not None and epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive integers, got {epochs} and {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    train = dataset.train
    if len(train) > MAX_TRAIN:
        train = train.subset(torch.randperm(len(train), generator=generator)[:MAX_TRAIN])
    epochs = default_epochs(len(train), batch_size, vectors=not dataset.is_image) if epochs is None else epochs
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureClassifier(dataset.x_shape, dataset.num_classes, log1p_input=dataset.model_kind == "counts")
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    steps = epochs * math.ceil(len(train) / batch_size)
    # cosine decay to zero: the last epochs average out the minibatch noise of a constant rate
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    net.train()
    with tqdm(total=steps, disable=not progress, unit="step", desc=f"classifier {dataset.name}") as bar:
        for epoch in range(epochs):
            for x, y in data.batches(train, batch_size, generator):
                if len(x) < 2:  # batch normalization needs two rows; the row comes back in the next epoch's order
                    continue
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
    seconds = time.perf_counter() - start
    probabilities = predict(net, dataset.test.images())  # (n_test, num_classes)
    accuracy = (probabilities.argmax(1) == dataset.test.y).double().mean().item()
    net.info = {
        "dataset": dataset.name,
        "data_seed": None,
        "test_accuracy": accuracy,
        "epochs": epochs,
        "seed": seed,
        "train_size": len(train),
        "seconds": seconds,
    }
    return net


def _cache_fields(config: data.DataConfig) -> dict:
    """What a cached classifier depends on besides the dataset name and its seed (hashed into the key)."""
    return {
        "version": CLASSIFIER_VERSION,
        "x_shape": X_SHAPES.get(config.data),
        "val_size": config.val_size,
        "channels": CHANNELS,
        "feature_dim": FEATURE_DIM,
        "max_train": MAX_TRAIN,
        "target_steps": TARGET_STEPS,
        "epoch_range": EPOCH_RANGE,
        "learning_rate": LEARNING_RATE,
        # the user's data: what else sets the training split and the images (absent for the built-ins, whose
        # cached classifiers keep their keys)
        **(_user_fields(config) if config.is_user_data else {}),
    }


def _user_fields(config: data.DataConfig) -> dict:
    """What else sets a user's training split, its features and its labels, and the network for vectors."""
    return {
        "test_size": config.test_size,
        "image_size": list(config.image_size),
        "label_column": config.label_column,
        "drop_columns": list(config.drop_columns),
        "split_column": config.split_column,
        "layer": config.layer,
        "kind": config.kind,
        "hidden": HIDDEN,
        "vector_epoch_range": VECTOR_EPOCH_RANGE,
    }


def classifier_path(data_config: data.DataConfig) -> Path:
    """Where the classifier of a dataset is cached: ``<data dir>/classifiers/<name>-seed<data_seed>-<key>.pt``.

    The data dir is ``data_config.data_dir`` or :func:`pvae.data.idx.default_data_dir`; the key is a hash of what
    changes the classifier (the image shape, the validation size that sets the training split, the network and
    its training recipe, :data:`CLASSIFIER_VERSION`), so a change finds no stale file.

    :param data_config: the dataset (binarization, labels and ``train_size`` do not matter).
    """
    text = json.dumps(_cache_fields(data_config), sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:10]
    root = Path(data_config.data_dir) if data_config.data_dir is not None else default_data_dir()
    name = data_config.data
    if data_config.is_user_data:  # a path: named by the file and the contents it was trained on
        name = f"{Path(name).name}-{(data_config.checksum or 'unrecorded')[:12]}"
    return root / "classifiers" / f"{name}-seed{data_config.data_seed}-{key}.pt"


def _save(net: FeatureClassifier, path: Path, fields: dict) -> None:
    state = {
        "format": _FORMAT,
        "fields": json.dumps(fields, sort_keys=True),
        "x_shape": list(net.x_shape),
        "num_classes": net.num_classes,
        "feature_dim": net.feature_dim,
        "log1p_input": net.log1p_input,
        "info": json.dumps(net.info, sort_keys=True),
        "state_dict": net.state_dict(),
    }
    atomic_write(path, lambda handle: torch.save(state, handle))


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:80]


def _read(path: Path, fields: dict) -> FeatureClassifier:
    fix = "delete it and run again to train a new one"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises EOFError, UnpicklingError, RuntimeError ... on a bad file
        kind = "empty (0 bytes)" if path.stat().st_size == 0 else "truncated or corrupt"
        raise ValueError(f"{path} is not a readable classifier ({kind}: {_first_line(error)}): {fix}") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a pvae classifier: {fix}")
    if state.get("fields") != json.dumps(fields, sort_keys=True):
        raise ValueError(f"{path} was trained for other settings than its name says ({state.get('fields')}): {fix}")
    try:
        info = json.loads(state["info"])
        net = FeatureClassifier(
            state["x_shape"],
            state["num_classes"],
            state["feature_dim"],
            info=info,
            log1p_input=state.get("log1p_input", False),
        )
        net.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path} does not hold a whole classifier ({_first_line(error)}): {fix}") from None
    return net.eval()


def load_classifier(data_config: data.DataConfig, *, train: bool = True, progress: bool = True) -> FeatureClassifier:
    """The cached classifier of a dataset (:func:`classifier_path`), trained and cached first when missing.

    Training (:func:`train_classifier`, seed 0, a few minutes on a CPU for the 28×28 sets) loads the data with
    grey levels, all labels and the whole training split, whatever ``data_config`` says of them; the cache is
    written atomically, so an interrupted run leaves no half file.

    :param data_config: the dataset.
    :param train: train and cache a missing classifier (else refuse).
    :param progress: show a tqdm bar while training.
    :raises ValueError: when the cached file is unreadable or was made for other settings (delete it), or it is
        missing and ``train`` is false.
    """
    path = classifier_path(data_config)
    fields = _cache_fields(data_config)
    if path.is_file():
        return _read(path, fields)
    if not train:
        raise ValueError(
            f"no classifier for {data_config.data} (data seed {data_config.data_seed}) is cached at {path}: train it "
            "with load_classifier(data_config, train=True) (seconds for digits, minutes for the 28×28 sets on a CPU)"
        )
    dataset = data.load(replace(data_config, binarize="none", labels=None, train_size=None))
    net = train_classifier(dataset, progress=progress)
    net.info["data_seed"] = data_config.data_seed
    _save(net, path, fields)
    return net.eval()


@torch.no_grad()
def _batched(net: nn.Module, function, images: torch.Tensor, batch_size: int, width: int) -> torch.Tensor:
    if images.ndim not in (2, 4):
        raise ValueError(
            f"images must be (n, C, H, W) or vectors (n, D), got shape {tuple(images.shape)}: add the channel axis"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    was_training = net.training
    net.eval()
    try:
        device = next(net.parameters()).device
        parts = [function(images[i : i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, width, device=device)


def embed(classifier: FeatureClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Features ``(n, feature_dim)`` of images ``(n, C, H, W)`` in [0, 1], in eval mode, without gradients.

    :param classifier: the classifier.
    :param images: the images, on any device (moved a batch at a time).
    :param batch_size: images per forward pass.
    """
    _check_shape(classifier, images)
    return _batched(classifier, classifier.features, images, batch_size, classifier.feature_dim)


def predict(classifier: FeatureClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities ``(n, num_classes)`` of images ``(n, C, H, W)`` in [0, 1].

    :param classifier: the classifier.
    :param images: the images, on any device (moved a batch at a time).
    :param batch_size: images per forward pass.
    """
    _check_shape(classifier, images)
    return _batched(classifier, lambda x: classifier(x).softmax(-1), images, batch_size, classifier.num_classes)


def _check_shape(classifier: FeatureClassifier, images: torch.Tensor) -> None:
    if images.ndim in (2, 4) and tuple(images.shape[1:]) != classifier.x_shape:
        raise ValueError(
            f"the classifier takes datapoints of shape {classifier.x_shape}, got {tuple(images.shape[1:])}: "
            "use the classifier of the dataset they come from"
        )
