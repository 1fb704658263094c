"""The semi-supervised M2: enumeration of the unknown label, the classification term, and what it buys."""

import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from sklearn.linear_model import LogisticRegression

from pvae import data
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.objectives import loss_module
from pvae.engine.train import TrainConfig, fit
from pvae.measures.evaluate import evaluate
from tests.conftest import derived_seed


def _pair(aux_weight=3.0):
    return build_pair(PairConfig("m2", "m2", z_dim=2, hidden=(16,), aux_weight=aux_weight), (1, 8, 8))


@pytest.mark.statistical
def test_enumerated_bound_is_the_classifier_weighted_sum_of_labelled_bounds():
    model, guide = _pair()
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.4))
    n = 4000
    enumerated = TraceEnum_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)(model, guide)(x)
    # U(x) = Σ_y q(y|x) L(x, y) + H[q(y|x)], each labelled bound L(x, y) estimated on its own
    labelled = Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)(model, guide)
    log_q = guide.classify(x).log_softmax(-1)  # (3, 10)
    by_hand = 0.0
    for i in range(3):
        bounds = torch.stack([-labelled(x[i : i + 1], torch.tensor([c])) for c in range(10)])
        by_hand += (log_q[i].exp() * (bounds - log_q[i])).sum()
    # both are Monte Carlo over z only; 4000 draws put their error well under 0.1 nats here
    assert enumerated.item() == pytest.approx(-by_hand.item(), abs=0.15)


def test_labelled_batches_add_the_weighted_classification_loss():
    model, guide = _pair(aux_weight=3.0)
    x, y = torch.bernoulli(torch.full((5, 1, 8, 8), 0.4)), torch.tensor([0, 3, 3, 7, 9])
    elbo = Trace_ELBO(max_plate_nesting=1)
    loss_fn = loss_module(model, guide, elbo)
    torch.manual_seed(derived_seed(0))
    total = loss_fn(x, y)
    torch.manual_seed(derived_seed(0))
    alone = loss_fn.elbo_loss(x, y)
    cross_entropy = F.cross_entropy(guide.classify(x), y, reduction="sum")
    assert (total - alone).item() == pytest.approx(3.0 * cross_entropy.item(), rel=1e-5)
    # unlabelled batches carry no classification term
    enum = TraceEnum_ELBO(max_plate_nesting=1)
    torch.manual_seed(derived_seed(0))
    unlabelled = loss_module(model, guide, enum)(x)
    torch.manual_seed(derived_seed(0))
    assert unlabelled.item() == pytest.approx(enum(model, guide)(x).item(), rel=1e-6)


def test_m2_needs_the_enumerating_estimator():
    model, guide = _pair()
    with pytest.raises(ValueError, match="--elbo enum"):
        fit(model, guide, data.load(data.DataConfig("digits", labels=50)), TrainConfig(elbo="meanfield"))


@pytest.mark.statistical
def test_m2_with_50_labels_keeps_up_with_logistic_regression_on_the_same_labels():
    """M2 trained with 50 labels against a logistic regression on the same 50 labels (92.8%).

    M2's accuracy depends on its training draws: measured over seeds 1-6, 95.4% on average with
    sd 0.9 (94.2-96.7%) after 150 epochs; after 60, 94.3% with sd 1.0 (92.8-95.6% over seeds 0-8),
    where "2 points above the regression" failed under 4 seeds of 9. One run cannot assert the
    average margin of 2.6 points at 1e-3: it asserts M2 no more than half a point below the
    regression, 3.3 sd below M2's mean (p ≈ 5e-4 for a normal spread); an M2 whose classifier did
    not learn scores near 10%.
    """
    # Grey levels with the continuous Bernoulli: binarizing 8×8 digits throws away most of what a
    # classifier needs (a logistic regression drops from 93% to 83% on the same 50 labels).
    dataset = data.load(data.DataConfig("digits", binarize="none", labels=50))
    kept = dataset.train.labelled
    flat = lambda x: x.reshape(len(x), -1).numpy()  # noqa: E731
    baseline = LogisticRegression(max_iter=5000).fit(flat(dataset.train.images(kept)), dataset.train.y[kept].numpy())
    baseline_accuracy = baseline.score(flat(dataset.test.images()), dataset.test.y.numpy())
    pair = PairConfig("m2", "m2", z_dim=10, hidden=(200,), likelihood="continuous-bernoulli", aux_weight=50.0)
    model, guide = build_pair(pair, dataset.x_shape)
    fit(model, guide, dataset, TrainConfig(seed=derived_seed(0), elbo="enum", epochs=150), progress=False)
    result = evaluate(model, guide, dataset.test.images(), dataset.test.y, num_samples=50)
    print(f"digits, 50 labels: M2 {result['accuracy']:.1%}, logistic regression {baseline_accuracy:.1%}")
    assert result["accuracy"] >= baseline_accuracy - 0.005


def test_traced_m2_loss_matches_the_eager_one_on_both_kinds_of_batch():
    from pvae.engine.estimators import make_elbo
    from pvae.engine.objectives import TracedLoss

    model, guide = _pair()
    eager = loss_module(model, guide, make_elbo("enum"))
    traced = TracedLoss(eager)
    x, y = torch.bernoulli(torch.full((5, 1, 8, 8), 0.4)), torch.tensor([0, 3, 3, 7, 9])
    for args in ((x,), (x, y), (x,)):
        for seed in (1, 2):  # the tracing draw and another
            torch.manual_seed(derived_seed(seed))
            expected = eager(*args)
            torch.manual_seed(derived_seed(seed))
            assert traced(*args).item() == pytest.approx(expected.item(), rel=1e-5)
    assert traced.compilations == 2  # one trace per kind of batch
