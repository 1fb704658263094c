"""Sample quality of a trained pair (``pvae quality``): how near its images come to the data's, and how sharp.

Images are compared in the features of a small classifier trained on the dataset's grey-level
training split (:mod:`pvae.measures.quality.classifier`, cached beside the data), since Inception features
need weights that are often out of reach and mean little for 28×28 grey images. Every set of
generated images is scored against the same real test images, at equal sizes:

* the **Fréchet distance** between Gaussians fitted to the two sets of features (Heusel et al., 2017,
  in this feature space rather than Inception's);
* **precision and recall** (Kynkäänniemi et al., 2019): the share of generated images inside the
  real images' k-nearest-neighbour manifold, and of real images inside the generated one;
* the classifier's **confidence** (mean largest class probability) and **class coverage** (the share of
  classes that receive at least half the share of the classifier's votes they receive on real images);
* **sharpness** (:mod:`pvae.measures.quality.sharpness`): the share of spectral power at high spatial
  frequencies, and the mean gradient magnitude.

The sets: ``prior`` (decoder means at z ~ p(z); for a point-mass guide, the autoencoder, its decoder
was never trained on such draws and the set is labelled so), ``fitted prior`` (decoder means at draws
from a Gaussian fitted to draws of the aggregate posterior q(z), one z ~ q(z | x) per training image —
for an autoencoder its codes themselves: the fair baseline a careful user would try),
``reconstructions`` (decoder means at the codes of the test images), and ``likelihood draws`` (one
draw of p(x | z) at each prior z, for sharpness only). ``prior_holes`` is the share of prior draws
that fall where the aggregate posterior's draws are not (:func:`prior_holes`). ``reference`` scores real training images
against the real test images: the floor that sampling noise alone gives at this size.

The user's labelled data that are not images (a table, counts) are scored the same way in the features of a
classifier of their rows (:class:`~pvae.measures.quality.classifier.FeatureClassifier` for vectors): the Fréchet
distance,
precision, recall, confidence and coverage of decoder means, as the model sees the data (standardized features,
counts as rates); sharpness and the Inception FID are for images only. ``pvae quality`` adds them to the posterior
predictive checks (:mod:`pvae.measures.quality.ppc`) of such data.
"""

import math

import numpy as np
import pyro
import torch
from pyro import poutine

from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.base.sites import Z
from pvae.engine.pair import traits
from pvae.measures.evaluate import decode_mean, posterior_mean
from pvae.measures.quality.classifier import embed, predict
from pvae.measures.quality.frechet import compute_frechet
from pvae.measures.quality.inception import inception_features
from pvae.measures.quality.ppc import describe_ppc
from pvae.measures.quality.precision_recall import precision_recall
from pvae.measures.quality.sharpness import sharpness

#: ``--inception`` value that looks for the standard Inception weights where they are usually kept.
AUTO = "auto"


@options.config
class QualityConfig:
    """Settings of :func:`quality` and of ``pvae quality``, whose defaults they are.

    :param samples: images of each set scored, and real test images they are scored against (at most
        the test split's size: both sides always have the same size, as precision and recall need).
    :param neighbours: k, the neighbours that set the radius of each image's ball in precision and recall (Kynkäänniemi
        et al. use 3).
    :param cutoff: spatial frequency in cycles per pixel above which power counts as high (Nyquist is 0.5).
    :param train_classifier: train the dataset's feature classifier when it is not cached yet (seconds for
        digits, minutes for the 28×28 sets on a CPU); with ``--no-train-classifier`` a missing classifier is an
        error.
    :param inception: also compute the standard FID with the TorchScript Inception-v3 at this path, or
        ``auto`` to look in ``$PVAE_INCEPTION`` and the data directory (slow on a CPU).
    :param progress: show a progress bar while the classifier trains.
    :param batch_size: images decoded and embedded at once.
    :param seed: seed of the prior draws, of the training images of the reference and of the
        likelihood draws.
    :param out: folder of the results.
    """

    samples: int = 10_000
    neighbours: int = 3
    cutoff: float = 0.25
    train_classifier: bool = True
    inception: str | None = None
    progress: bool = True
    batch_size: int = 500
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.seed(self, "seed")
        options.positive(self, "samples", "neighbours", "batch_size")
        options.finite(self, "cutoff")
        options.require(self, "cutoff", 0 < self.cutoff < 0.5, "between 0 and 0.5 cycles per pixel (Nyquist)")


def check_sizes(config: QualityConfig, test_size: int) -> int:
    """The images of each set: ``--samples``, at most the test split's size.

    :param config: the settings.
    :param test_size: the test split's size.
    :raises ValueError: when that leaves no ``--neighbours`` neighbours for an image's ball.
    """
    n = min(config.samples, test_size)
    if n <= config.neighbours:
        raise ValueError(
            f"precision and recall need more images than --neighbours {config.neighbours}, but each set holds {n} "
            f"(--samples {config.samples}, the test split {test_size}): raise --samples or lower --neighbours"
        )
    return n


def class_scores(probs: torch.Tensor, real_shares: torch.Tensor) -> dict:
    """The classifier's view of a set of images.

    :param probs: class probabilities of the images ``(n, classes)``.
    :param real_shares: the share of real test images each class receives from the classifier ``(classes,)``.
    :returns: ``confidence`` (mean largest probability), ``class_shares`` (share of votes per class) and
        ``coverage`` (share of classes whose votes reach half their share on real images).
    """
    votes = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / len(probs)
    covered = votes >= 0.5 * real_shares.double()
    return {
        "confidence": float(probs.max(1).values.mean()),
        "class_shares": votes.tolist(),
        "coverage": float(covered.double().mean()),
    }


def prior_holes(codes: torch.Tensor, draws: torch.Tensor, quantile: float = 0.99) -> float:
    """The share of prior draws that fall in holes of the aggregate posterior, seen through its codes.

    A draw is in a hole when its nearest code is farther than the ``quantile`` of the codes' own
    nearest-neighbour distances (each code's neighbour found among the others). When the codes and the
    draws come from one distribution, about ``1 − quantile`` of the draws are; this needs no density of
    q(z | x), so it applies to an autoencoder's point codes as to a VAE's means.

    :param codes: codes of data ``(n, d)``, e.g. posterior means.
    :param draws: draws of the prior ``(m, d)``.
    :param quantile: which of the codes' neighbour distances marks the edge of a hole.
    """
    if len(codes) < 2:
        raise ValueError(f"prior holes need at least 2 codes, got {len(codes)}")
    codes, draws = codes.double(), draws.double()
    own = torch.cat([_nearest(codes[i : i + 1000], codes, skip_self=i) for i in range(0, len(codes), 1000)])
    to_codes = torch.cat([_nearest(draws[i : i + 1000], codes) for i in range(0, len(draws), 1000)])
    edge = torch.quantile(own, quantile)
    return float((to_codes > edge).double().mean())


def _nearest(points: torch.Tensor, codes: torch.Tensor, skip_self: int | None = None) -> torch.Tensor:
    """Distance from each of ``points`` to its nearest row of ``codes`` (not itself, when ``points`` are
    ``codes[skip_self:]``)."""
    distances = torch.cdist(points, codes)  # (len(points), len(codes))
    if skip_self is not None:
        rows = torch.arange(len(points))
        distances[rows, rows + skip_self] = math.inf
    return distances.min(1).values


@torch.no_grad()
def codes_of(guide, images: torch.Tensor, y: torch.Tensor | None, batch_size: int, draw: bool = False) -> torch.Tensor:
    """Posterior means E_q[z | x] of ``images`` ``(n, z_dim)``, in batches (given ``y`` for a guide
    that reads labels), or with ``draw`` one draw z ~ q(z | x) each: draws of the aggregate posterior
    q(z), which spreads where means do not (a dimension the decoder ignores has every mean at 0 and
    every draw from the prior)."""

    def one(x, y_rows):
        if not draw:
            return posterior_mean(guide, x, y_rows)
        device = module_device(guide)
        args = (x,) if y_rows is None else (x, y_rows)
        return poutine.trace(guide).get_trace(*(to_device(a, device) for a in args)).nodes[Z]["value"].cpu()

    return torch.cat(
        [
            one(images[i : i + batch_size], None if y is None else y[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        ]
    )


@torch.no_grad()
def decode(model, z: torch.Tensor, y: torch.Tensor | None, batch_size: int, draw: bool = False) -> torch.Tensor:
    """Decoder means at ``z`` ``(n, *x_shape)`` in batches, or one draw of p(x | z) each with ``draw``."""
    out = []
    for i in range(0, len(z), batch_size):
        rows = slice(i, i + batch_size)
        if draw:
            device = module_device(model)
            y_rows = None if y is None else to_device(y[rows], device)
            out.append(model.decode(to_device(z[rows], device), y_rows).sample().cpu())
        else:
            out.append(decode_mean(model, z[rows], None if y is None else y[rows]))
    return torch.cat(out)


def fitted_gaussian(codes: torch.Tensor) -> torch.distributions.MultivariateNormal:
    """The Gaussian fitted to ``codes`` ``(n, d)`` (mean and covariance, a small jitter added)."""
    mean = codes.double().mean(0)
    cov = torch.cov(codes.double().T).reshape(codes.shape[1], codes.shape[1])
    cov = cov + 1e-6 * cov.diagonal().mean().clamp_min(1e-12) * torch.eye(len(mean), dtype=cov.dtype)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)


class Reference:
    """Real test images seen through the classifier: the side every generated set is scored against.

    :param classifier: the dataset's feature classifier.
    :param images: real test images ``(n, C, H, W)`` in [0, 1].
    :param labels: their classes ``(n,)``.
    :param k: neighbours of precision and recall.
    :param batch_size: images embedded at once.
    """

    def __init__(self, classifier, images: torch.Tensor, labels: torch.Tensor, k: int = 3, batch_size: int = 500):
        self.classifier, self.k, self.batch_size = classifier, k, batch_size
        self.images, self.labels = images, labels
        self.features = embed(classifier, images, batch_size)
        self.shares = torch.bincount(
            predict(classifier, images, batch_size).argmax(1), minlength=classifier.num_classes
        ).double() / len(images)

    def __len__(self) -> int:
        return len(self.images)

    def score(self, images: torch.Tensor, features: torch.Tensor | None = None, real: slice | None = None) -> dict:
        """Fréchet distance, precision, recall, confidence and coverage of ``images`` against the real images.

        :param images: generated images ``(n, C, H, W)``; ``n`` should equal the reference's size.
        :param features: their features, when already computed.
        :param real: the real images to compare with (all when ``None``), as a mask or index.
        """
        features = embed(self.classifier, images, self.batch_size) if features is None else features
        real_features = self.features if real is None else self.features[real]
        out = {"fd": compute_frechet(real_features.double().numpy(), features.double().numpy())}
        pr = precision_recall(real_features, features, k=self.k)
        out.update(precision=pr["precision"], recall=pr["recall"])
        out.update(class_scores(predict(self.classifier, images, self.batch_size), self.shares))
        return out


@torch.no_grad()
def quality(
    model,
    guide,
    dataset,
    classifier,
    config: QualityConfig | None = None,
    inception=None,
    progress=None,
    reference: "Reference | None" = None,
) -> dict:
    """Score the images of a trained pair against the real test images: see the module's docstring.

    :param model: the generative model.
    :param guide: its guide (for reconstructions and the codes of the fitted prior).
    :param dataset: the run's dataset with grey levels (``binarize="none"``, same split seed), whose test
        images are the real side and whose training images give the reference and the fitted prior.
    :param classifier: the dataset's :class:`pvae.measures.quality.classifier.FeatureClassifier`.
    :param config: sizes, neighbours, cutoff and seed.
    :param inception: the standard Inception-v3 (:func:`pvae.measures.quality.inception.load_inception`): when given,
        also the standard FID of the prior samples against the test images (``standard_fid``).
    :param progress: called with the name of each set before it is scored.
    :param reference: the real side already embedded, to score several runs of one dataset against it
        (:class:`Reference` of the first ``samples`` test images, with the config's ``neighbours``).
    :returns: ``sets`` (name → scores and sharpness), ``data`` (the real images' sharpness),
        ``reference`` (real training images against the test images), ``prior_holes`` (see
        :func:`prior_holes`), ``per_class`` for a model that generates a class, the ``classifier``'s
        record, the sizes, notes on what does not apply, and ``images`` (the first 100 prior means,
        their likelihood draws and real images, as tensors for the figures: not for JSON).
    :raises ValueError: for images whose shape is not the classifier's.
    """
    config = QualityConfig() if config is None else config
    if tuple(dataset.x_shape) != tuple(classifier.x_shape):
        raise ValueError(
            f"the classifier was trained on images of shape {tuple(classifier.x_shape)}, the run's data are "
            f"{tuple(dataset.x_shape)}: use the classifier of the run's dataset"
        )
    say = progress or (lambda name: None)
    image = dataset.is_image
    if inception is not None and not image:
        raise ValueError("the Inception FID scores images; the run's data are vectors: drop --inception")

    def look(images: torch.Tensor) -> dict:  # sharpness, for images only
        return sharpness(images, cutoff=config.cutoff) if image else {}

    pair = traits(model, guide)
    generator = torch.Generator().manual_seed(config.seed)
    pyro.set_rng_seed(config.seed)
    n = check_sizes(config, len(dataset.test))
    if reference is None:
        reference = Reference(
            classifier, dataset.test.images(slice(n)), dataset.test.y[:n], config.neighbours, config.batch_size
        )
    elif len(reference) != n or reference.k != config.neighbours or reference.classifier is not classifier:
        raise ValueError(
            f"the reference holds {len(reference)} test images with k = {reference.k}, but this config scores {n} "
            f"with --neighbours {config.neighbours}: build the Reference with the config's sizes and classifier"
        )
    real = reference
    train_index = torch.randperm(len(dataset.train), generator=generator)[:n]
    train_images, train_y = dataset.train.images(train_index), dataset.train.y[train_index]
    notes = {}

    if pair.decodes_labels and not pair.label_prior:
        notes["label_prior"] = (
            f"{pair.model} has no label_prior(): the classes of its samples are the real test images' labels"
        )

    def labels_for(count: int) -> torch.Tensor | None:
        if not pair.decodes_labels:
            return None
        if not pair.label_prior:
            return real.labels[torch.arange(count) % len(real.labels)]
        return model.label_prior().sample((count,)).cpu()  # classes drawn from p(y): samples of the marginal p(x)

    guide_reads_y = pair.takes_labels() or pair.decodes_labels

    say("reference")
    results: dict = {"reference": real.score(train_images), "sets": {}}
    if image:
        results["data"] = sharpness(real.images, cutoff=config.cutoff)

    say("prior")
    z = model.prior((n,)).sample().cpu()  # scores and figures read the host
    y_prior = labels_for(n)
    prior_images = decode(model, z, y_prior, config.batch_size)
    results["sets"]["prior"] = real.score(prior_images) | look(prior_images)
    results["sets"]["prior"]["source"] = "decoder means at z ~ p(z)"
    if pair.point_estimate:
        results["sets"]["prior"]["source"] += " (a point-mass guide: the decoder never saw such draws; a baseline)"

    draws = None
    if image:
        say("likelihood draws")
        draws = decode(model, z, y_prior, config.batch_size, draw=True)
        results["sets"]["likelihood draws"] = sharpness(draws, cutoff=config.cutoff) | {
            "source": "one draw of p(x | z) at each prior z, for sharpness"
        }

    say("fitted prior")
    codes = codes_of(guide, train_images, train_y if guide_reads_y else None, config.batch_size, draw=True)
    fitted = fitted_gaussian(codes)
    fitted_images = decode(model, fitted.sample((n,)).to(z.dtype), labels_for(n), config.batch_size)
    results["sets"]["fitted prior"] = real.score(fitted_images) | look(fitted_images)
    results["sets"]["fitted prior"]["source"] = "decoder means at z from a Gaussian fitted to q(z) (training codes)"

    say("reconstructions")
    test_y = real.labels if guide_reads_y else None
    test_codes = codes_of(guide, real.images, test_y, config.batch_size)
    rec = decode(model, test_codes, real.labels if pair.decodes_labels else None, config.batch_size)
    results["sets"]["reconstructions"] = real.score(rec) | look(rec)
    results["sets"]["reconstructions"]["source"] = "decoder means at the codes of the test images"
    results["prior_holes"] = prior_holes(codes, model.prior((n,)).sample().cpu().double())

    if inception is not None:
        say("standard FID (Inception-v3)")
        results["standard_fid"] = {
            "fd": compute_frechet(
                inception_features(inception, real.images).double().numpy(),
                inception_features(inception, prior_images).double().numpy(),
            ),
            "set": "prior",
        }
    if pair.decodes_labels:
        say("per class")
        results["per_class"] = per_class(model, real, config)
    else:
        notes["per_class"] = f"{pair.model} does not generate a chosen class"
    results.update(
        samples=n,
        neighbours=config.neighbours,
        cutoff=config.cutoff,
        seed=config.seed,
        classifier=dict(classifier.info),
        notes=notes,
        images={"prior": prior_images[:100], "likelihood draws": draws[:100], "data": real.images[:100]}
        if image
        else {},
    )
    return results


def per_class(model, real: Reference, config: QualityConfig) -> dict:
    """For a model that decodes a chosen class: each class's samples against the real images of that
    class (Fréchet distance, precision, recall) and the share the classifier assigns to the class asked for."""
    out = {}
    for c in range(real.classifier.num_classes):
        mask = real.labels == c
        count = int(mask.sum())
        if count <= config.neighbours:
            out[str(c)] = {
                "skipped": f"{count} real test images of class {c}: fewer than --neighbours + 1 "
                f"= {config.neighbours + 1}"
            }
            continue
        z = model.prior((count,)).sample().cpu()
        y = torch.full((count,), c, dtype=torch.long)
        images = decode(model, z, y, config.batch_size)
        features = embed(real.classifier, images, config.batch_size)
        pr = precision_recall(real.features[mask], features, k=config.neighbours)
        out[str(c)] = {
            "fd": compute_frechet(real.features[mask].double().numpy(), features.double().numpy()),
            "precision": pr["precision"],
            "recall": pr["recall"],
            "accuracy": float((predict(real.classifier, images, config.batch_size).argmax(1) == c).double().mean()),
            "n": count,
        }
    return out


#: The scores of a set that tables show, in order, with their column titles.
HEADLINES = {
    "fd": "FD",
    "precision": "precision",
    "recall": "recall",
    "confidence": "confidence",
    "coverage": "coverage",
    "high_frequency_fraction": "HF power",
    "gradient_magnitude": "gradient",
}


def describe(results: dict) -> str:
    """The scores as a small text table: one row per set, one column per score (``—`` where a score does
    not apply, e.g. the Fréchet distance of likelihood draws), under a line that says how many images each
    set holds and how the classifier scores; the posterior predictive checks of data that are not images
    (``posterior_predictive``) first, and then the table where the data have labels."""
    parts = []
    if "posterior_predictive" in results:
        parts.append(describe_ppc(results["posterior_predictive"]))
    if "sets" in results:
        parts.append(_describe_sets(results))
    elif "classifier_skipped" in results:
        parts.append(f"no classifier scores: {results['classifier_skipped']}")
    return "\n".join(parts)


def _describe_sets(results: dict) -> str:
    accuracy = results.get("classifier", {}).get("test_accuracy")
    image = "data" in results  # the real images' sharpness: images only
    what = "images" if image else "rows"
    line = f"{results['samples']} {what} a set, against as many real test {what}"
    if accuracy is not None:
        line += f"; features of a classifier with test accuracy {accuracy:.3f}"
        if image:
            line += f"; HF power: share of power above {results.get('cutoff', 0.25):g} cycles per pixel"
    named = {"reference": results["reference"], **({"data": results["data"]} if image else {}), **results["sets"]}
    columns = {h: title for h, title in HEADLINES.items() if any(h in scores for scores in named.values())}
    rows = [line, f"{'':18s}" + "".join(f"{title:>11s}" for title in columns.values())]
    for name, scores in named.items():
        cells = "".join(f"{scores[h]:11.3f}" if isinstance(scores.get(h), float) else f"{'—':>11s}" for h in columns)
        rows.append(f"{name:18s}{cells}")
    return "\n".join(rows)


def spectra(results: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each set's radially averaged power spectrum ``(frequencies, power)``, the data's first."""
    named = {"data": results["data"], **results["sets"]}
    return {name: (np.asarray(s["frequencies"]), np.asarray(s["spectrum"])) for name, s in named.items()}
