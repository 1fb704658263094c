"""The fast path by default: the loss compiled with ``torch.jit.trace`` where a check against the eager
loss passes, eager execution where it cannot or does not, and one line saying which."""

import math

import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pvae import data
from pvae.engine.config import PairConfig, RunConfig, build_pair
from pvae.engine.estimators import make_elbo
from pvae.engine.objectives import Loss, TracedLoss, TraceMismatch, describe_execution, loss_module
from pvae.engine.train import TrainConfig, fit, make_loss
from pvae.guides.gaussian import GaussianGuide
from pvae.models.vae import VAE
from tests.conftest import derived_seed, on_test_device


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits"))


def _pair(dataset, model_class=VAE, seed=0):
    torch.manual_seed(derived_seed(seed))
    model = model_class(dataset.x_shape, z_dim=4, hidden=(64,))
    return on_test_device(model, GaussianGuide(dataset.x_shape, z_dim=4, hidden=(64,)))


class FrozenDraw(VAE):
    """A decoder gain computed in Python from the draw of z: a trace records it as a constant."""

    def decode(self, z, y=None):
        return self.likelihood(self.decoder(z) * (1.0 + float(z.detach().pow(2).mean())))


class FrozenBatch(VAE):
    """A decoder gain computed in Python from the batch: the same at every draw of one batch, so only
    a check on another batch sees that a trace froze it."""

    def forward(self, x, y=None):
        self.gain = 1.0 + 4.0 * float(x.mean())
        return super().forward(x, y)

    def decode(self, z, y=None):
        return self.likelihood(self.decoder(z) * self.gain)


def test_the_default_compiles_the_loss_checked_against_the_eager_one(digits):
    assert TrainConfig().jit == "auto"
    model, guide = _pair(digits)
    lines = []
    fit(model, guide, digits, TrainConfig(epochs=1, seed=derived_seed(1)), progress=False, say=lines.append)
    assert len(lines) == 1 and lines[0].startswith("loss: compiled with torch.jit.trace"), lines
    loss_fn = make_loss(model, guide, TrainConfig())
    assert isinstance(loss_fn, TracedLoss)
    x = digits.test.images(slice(50)).to(model.decoder[-1].weight.device)
    assert loss_fn.compile((x,))
    (check,) = loss_fn.checks
    assert check["value_error"] <= 1e-4 and check["gradient_error"] <= 1e-4
    assert check["shapes"] == [[50, 1, 8, 8]]


def test_compiling_and_checking_leave_the_random_stream_where_it_was(digits):
    """A compiled call draws what the eager call would have drawn: the same loss, to rounding."""
    model, guide = _pair(digits)
    eager = loss_module(model, guide, make_elbo("meanfield"))
    traced = TracedLoss(eager)
    x = digits.test.images(slice(64)).to(model.decoder[-1].weight.device)
    torch.manual_seed(derived_seed(2))
    first, second = eager(x), eager(x)
    torch.manual_seed(derived_seed(2))
    assert float(traced(x).detach()) == pytest.approx(
        float(first.detach()), rel=1e-5
    )  # traced and checked in this call
    assert float(traced(x).detach()) == pytest.approx(float(second.detach()), rel=1e-5)
    assert float(first.detach()) != float(second.detach())


@pytest.mark.parametrize("name", ["iwae", "dreg", "graph"])
def test_the_default_runs_estimators_a_trace_cannot_hold_eagerly_and_says_why(digits, name):
    model, guide = _pair(digits)
    loss_fn = make_loss(model, guide, TrainConfig(elbo=name))
    assert isinstance(loss_fn, Loss)
    assert describe_execution(loss_fn).startswith("loss: eager, because ")
    assert "loss_and_grads" in describe_execution(loss_fn) or "hook" in describe_execution(loss_fn)
    with pytest.raises(ValueError, match="--jit auto"):
        make_loss(model, guide, TrainConfig(elbo=name, jit="on"))


def test_jit_off_runs_eagerly(digits):
    model, guide = _pair(digits)
    loss_fn = make_loss(model, guide, TrainConfig(jit="off"))
    assert isinstance(loss_fn, Loss)
    assert describe_execution(loss_fn) == "loss: eager (--jit off)"


def test_a_trace_that_freezes_the_value_falls_back_to_eager(digits):
    """Pyro's own TraceMeanField_ELBO returns loss + (surrogate − float(surrogate)): a trace freezes the
    float, so the compiled value is wrong at every draw but the tracing one; its gradient is right."""
    model, guide = _pair(digits)
    x = digits.test.images(slice(64)).to(model.decoder[-1].weight.device)
    lines = []
    auto = TracedLoss(loss_module(model, guide, TraceMeanField_ELBO()), fallback=True, say=lines.append)
    assert not auto.compile((x,))
    assert "froze a value or a branch" in auto.eager_reason
    assert lines == [describe_execution(auto)] and lines[0].startswith("loss: eager, because the compiled loss gave")
    torch.manual_seed(derived_seed(3))
    eager_value = float(auto.loss_fn(x).detach())
    torch.manual_seed(derived_seed(3))
    assert float(auto(x).detach()) == eager_value  # the eager loss from now on
    strict = TracedLoss(loss_module(model, guide, TraceMeanField_ELBO()))
    with pytest.raises(TraceMismatch, match="froze a value.*--jit off"):
        strict(x)


def test_a_trace_that_freezes_a_number_drawn_from_z_falls_back_to_eager(digits):
    model, guide = _pair(digits, FrozenDraw)
    lines = []
    history = fit(model, guide, digits, TrainConfig(epochs=1, seed=derived_seed(4)), progress=False, say=lines.append)
    assert len(lines) == 1 and lines[0].startswith("loss: eager, because the compiled loss gave"), lines
    assert history[0]["val_elbo"] < 0


def test_a_trace_that_freezes_a_number_of_the_batch_is_caught_on_another_batch(digits):
    model, guide = _pair(digits, FrozenBatch)
    x = digits.test.images(slice(64)).to(model.decoder[-1].weight.device)
    assert TracedLoss(loss_module(model, guide, make_elbo("meanfield"))).compile((x,))  # one batch cannot tell
    lines = []
    fit(model, guide, digits, TrainConfig(epochs=1, seed=derived_seed(5)), progress=False, say=lines.append)
    assert lines[0].startswith("loss: eager, because the compiled loss gave"), lines
    with pytest.raises(TraceMismatch, match="--jit auto runs such a loss eagerly"):
        fit(model, guide, digits, TrainConfig(epochs=1, seed=derived_seed(5), jit="on"), progress=False)


def test_the_check_fails_loudly_on_a_loss_the_tracer_cannot_record(digits):
    model, guide = _pair(digits)
    x = digits.test.images(slice(16)).to(model.decoder[-1].weight.device)

    class Unrecordable(torch.nn.Module):
        def forward(self, x):
            return float(x.sum())  # a traced function's outputs must be tensors

    lines = []
    auto = TracedLoss(Unrecordable(), fallback=True, say=lines.append)
    value = auto(x)  # the eager loss, after the failed trace
    assert float(value) == pytest.approx(float(x.sum()))
    assert auto.eager_reason.startswith("torch.jit.trace could not record the loss (") and len(lines) == 1
    with pytest.raises(TraceMismatch, match="could not record the loss.*--jit off"):
        TracedLoss(Unrecordable())(x)


def test_runs_written_before_jit_had_modes_read_as_on_or_off():
    config = RunConfig().to_dict()
    for earlier, today in ((False, "off"), (True, "on")):
        config["train"]["jit"] = earlier
        assert RunConfig.from_dict(config).train.jit == today
    with pytest.raises(ValueError, match="--jit must be one of auto, on, off, not True"):
        TrainConfig(jit=True)  # the Python API takes today's words
    with pytest.raises(ValueError, match="--jit.*auto, off, on|--jit.*auto, on, off"):
        TrainConfig(jit="fast")


def test_semi_supervised_m2_trains_under_the_default(digits):
    """M2's unlabelled and labelled batches are two traces (enumerated and observed label), each checked."""
    partial = data.load(data.DataConfig("digits", labels=100))
    torch.manual_seed(derived_seed(6))
    model, guide = on_test_device(
        *build_pair(PairConfig(model="m2", z_dim=4, hidden=(64,)), partial.x_shape, partial.num_classes)
    )
    lines = []
    history = fit(
        model,
        guide,
        partial,
        TrainConfig(elbo="enum", epochs=1, seed=derived_seed(6)),
        progress=False,
        say=lines.append,
    )
    assert lines[0].startswith("loss: compiled"), lines
    assert history[0]["val_elbo"] < 0


def test_a_loss_that_is_not_finite_at_the_check_runs_eagerly_without_a_verdict(digits):
    """A diverging loss cannot judge the trace: that call runs eagerly, nothing is said (fit's own check of the
    loss stops training with the fix), and a later call tries again."""

    class Diverged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x.sum() * self.w * float("nan")

    lines = []
    auto = TracedLoss(Diverged(), fallback=True, say=lines.append)
    assert not auto.compile((torch.ones(3, 2),))
    assert auto.eager_reason is None and lines == [] and auto.compilations == 0
    assert math.isnan(float(auto(torch.ones(3, 2)).detach()))
    strict = TracedLoss(Diverged())  # --jit on: no verdict either, no refusal
    assert not strict.compile((torch.ones(3, 2),))


def test_the_check_says_when_the_split_has_no_other_batch(digits):
    """1,257 training images: a batch of 1,000 has no other of its size to be checked on, one of 500 has."""
    model, guide = _pair(digits)
    said = {}
    for batch_size in (1000, 500):
        lines = []
        config = TrainConfig(epochs=1, batch_size=batch_size, seed=derived_seed(8))
        fit(model, guide, digits, config, progress=False, say=lines.append)
        said[batch_size] = lines[0]
    assert said[1000].startswith("loss: compiled with torch.jit.trace, its value and gradient on a fresh draw of the")
    assert "on a fresh draw equal" in said[500] or "on a fresh draw within" in said[500]
