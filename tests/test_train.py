import math

import pytest
import torch

from pvae import data
from pvae.base.runs import Run
from pvae.engine.compatibility import check_compatible
from pvae.engine.config import PairConfig, RunConfig, build_pair
from pvae.engine.pair import traits
from pvae.engine.train import TrainConfig, fit
from pvae.guides.gaussian import GaussianGuide
from pvae.models.vae import VAE
from tests.conftest import derived_seed, on_test_device


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits"))


def _pair(dataset, seed=0):
    torch.manual_seed(derived_seed(seed))
    return on_test_device(*build_pair(PairConfig(z_dim=4, hidden=(64,)), dataset.x_shape))


@pytest.mark.parametrize("estimator", ["trace", "meanfield"])
@pytest.mark.statistical
def test_training_raises_the_validation_elbo(digits, estimator):
    model, guide = _pair(digits)
    history = fit(
        model, guide, digits, TrainConfig(seed=derived_seed(0), elbo=estimator, epochs=8, batch_size=64), progress=False
    )
    first, last = history[0]["val_elbo"], history[-1]["val_elbo"]
    # An untrained pair scores about -44 nats per digit; eight epochs reach about -27.
    assert last > first + 5, (first, last)
    assert last > -30
    assert [h["epoch"] for h in history] == list(range(1, 9))


def test_resuming_from_a_checkpoint_repeats_the_uninterrupted_run(digits, tmp_path):
    config = TrainConfig(epochs=4, batch_size=128, seed=derived_seed(3))
    model, guide = _pair(digits)
    straight = fit(model, guide, digits, config, run=Run.create(tmp_path / "a", {}), progress=False)

    model, guide = _pair(digits)
    run = Run.create(tmp_path / "b", {})
    fit(model, guide, digits, TrainConfig(epochs=2, batch_size=128, seed=derived_seed(3)), run=run, progress=False)
    model, guide = _pair(digits, seed=99)  # fresh parameters: everything must come from the checkpoint
    resumed = fit(model, guide, digits, config, run=run, resume=True, progress=False)
    assert len(resumed) == 4
    for a, b in zip(straight, resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_elbo"] == pytest.approx(b["val_elbo"], rel=1e-5)
    assert Run(tmp_path / "b").load_checkpoint()["epoch"] == 4
    assert len(run.metrics()) == 4


def test_bernoulli_on_grey_levels_is_refused_with_the_fix():
    grey = data.load(data.DataConfig("digits", binarize="none"))
    model = VAE(grey.x_shape)
    with pytest.raises(ValueError, match="needs binary pixels.*--binarize dynamic.*--likelihood gaussian"):
        check_compatible(traits(model), grey)
    with pytest.raises(ValueError, match="needs binary pixels"):
        fit(model, GaussianGuide(grey.x_shape), grey, TrainConfig(seed=derived_seed(0), epochs=1), progress=False)


@pytest.mark.statistical
def test_a_gaussian_likelihood_trains_on_grey_levels():
    grey = data.load(data.DataConfig("digits", binarize="none"))
    model, guide = on_test_device(*build_pair(PairConfig(z_dim=4, hidden=(64,), likelihood="gaussian"), grey.x_shape))
    history = fit(model, guide, grey, TrainConfig(seed=derived_seed(0), epochs=10, lr=3e-3), progress=False)
    # Measured: -61.2 after the first epoch, -43.7 after the tenth.
    assert history[-1]["val_elbo"] > history[0]["val_elbo"] + 10


def test_run_config_round_trips_through_json():
    config = RunConfig(pair=PairConfig(hidden=(512, 256)), train=TrainConfig(beta=4.0))
    import json

    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown keys \\['zdim'\\]"):
        RunConfig.from_dict({"pair": {"zdim": 3}})


def test_unknown_model_and_guide_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown model 'vea'; choose one of \\['cvae', 'linear', 'm2'"):
        build_pair(PairConfig(model="vea"), (1, 8, 8))
    with pytest.raises(ValueError, match="unknown guide 'gauss'; choose one of \\['conditional-gaussian', 'delta'"):
        build_pair(PairConfig(guide="gauss"), (1, 8, 8))


def test_traced_loss_compiles_once_per_shape_and_estimates_the_same_loss(digits):
    from pvae.engine.estimators import make_elbo
    from pvae.engine.objectives import TracedLoss, loss_module

    model, guide = _pair(digits)
    eager = loss_module(model, guide, make_elbo("trace"), beta=2.0)
    traced = TracedLoss(eager)
    x = digits.test.images(slice(64))
    bias = model.decoder[-1].bias

    def draws(loss_fn, n=300):
        values, grads = [], []
        for _ in range(n):
            loss = loss_fn(x)
            grads.append(torch.autograd.grad(loss, [bias])[0])
            values.append(loss.detach())
        return torch.stack(values), torch.stack(grads)

    (v_e, g_e), (v_t, g_t) = draws(eager), draws(traced)
    # Same objective: the means agree within four standard errors, for the value and the gradient.
    se = (v_e.var() / len(v_e) + v_t.var() / len(v_t)).sqrt()
    assert abs(float(v_e.mean() - v_t.mean())) < 4 * float(se)
    se_g = (g_e.var(0) / len(g_e) + g_t.var(0) / len(g_t)).sqrt()
    assert bool(((g_e.mean(0) - g_t.mean(0)).abs() < 4 * se_g + 1e-4).float().mean() > 0.99)
    assert traced.compilations == 1
    assert traced(x) != traced(x)  # the noise is redrawn at every call
    traced(x[:10])
    assert traced.compilations == 2


@pytest.mark.statistical
def test_training_with_jit_matches_eager_training(digits):
    model, guide = _pair(digits)
    eager = fit(
        model, guide, digits, TrainConfig(epochs=4, batch_size=100, seed=derived_seed(5), jit="off"), progress=False
    )
    model, guide = _pair(digits)
    jit = fit(
        model, guide, digits, TrainConfig(epochs=4, batch_size=100, seed=derived_seed(5), jit="on"), progress=False
    )
    # the same draws (compiling and checking leave the generators as they were), the same kernels
    assert [m["train_loss"] for m in jit] == pytest.approx([m["train_loss"] for m in eager], rel=1e-5)
    assert jit[-1]["val_elbo"] == pytest.approx(eager[-1]["val_elbo"], rel=1e-5)
    assert jit[-1]["val_elbo"] > jit[0]["val_elbo"] + 3


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro's own warning, step by step
def test_a_diverging_loss_stops_training_before_anything_is_saved(digits, tmp_path):
    model, guide = _pair(digits)
    run = Run.create(tmp_path / "r", {})
    with pytest.raises(FloatingPointError, match="try a lower --lr"):
        fit(model, guide, digits, TrainConfig(seed=derived_seed(0), epochs=2, lr=1e30), run=run, progress=False)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.statistical
def test_vectorized_particles_average_the_same_elbo_with_less_variance(digits):
    from pvae.engine.estimators import make_elbo
    from pvae.engine.objectives import loss_module

    model, guide = _pair(digits)
    x = digits.test.images(slice(32))
    with torch.no_grad():
        one = torch.stack([loss_module(model, guide, make_elbo("trace"))(x) for _ in range(400)])
        eight = torch.stack([loss_module(model, guide, make_elbo("trace", 8, True))(x) for _ in range(400)])
    # Same expectation (within four standard errors); eight particles divide the variance by about 8.
    se = (one.var() / 400 + eight.var() / 400).sqrt()
    assert abs(float(one.mean() - eight.mean())) < 4 * float(se)
    assert 5 < float(one.var() / eight.var()) < 12


def test_fit_follows_the_beta_schedule(digits):
    model, guide = _pair(digits)
    config = TrainConfig(
        seed=derived_seed(0), epochs=4, batch_size=200, beta_schedule="linear-warmup", beta_warmup=2.0, beta=0.8
    )
    history = fit(model, guide, digits, config, progress=False)
    steps = math.ceil(len(digits.train) / 200)
    expected = [0.8 * min(1.0, (epoch + (steps - 1) / steps) / 2.0) for epoch in range(4)]
    assert [m["beta"] for m in history] == pytest.approx(expected)
    for m in history:  # the validation objective is reconstruction − beta·KL at that beta
        assert m["val_objective"] == pytest.approx(m["val_reconstruction"] - m["beta"] * m["val_kl"])
        assert m["val_elbo"] == pytest.approx(m["val_reconstruction"] - m["val_kl"])


#: K for each estimator in the test below: the importance-weighted ones need more than one particle.
_K = {"iwae": 3, "renyi": 3, "dreg": 3}


@pytest.mark.parametrize("estimator", ["trace", "meanfield", "graph", "iwae", "renyi", "dreg", "enum", "tcvae"])
@pytest.mark.statistical
def test_every_registry_entry_trains_through_fit_and_improves_its_objective(digits, estimator):
    from pvae.engine.estimators import ESTIMATORS, make_elbo
    from pvae.engine.objectives import loss_module

    assert estimator in ESTIMATORS
    k = _K.get(estimator, 1)
    model, guide = _pair(digits)
    objective = loss_module(model, guide, make_elbo(estimator, k, True))
    x = digits.training_batch(digits.val.images())

    def value():  # the estimator's own objective on validation, nats per datapoint, averaged over 5 draws
        torch.manual_seed(derived_seed(1))
        return -sum(objective.estimate(x) for _ in range(5)) / (5 * len(x))

    before = value()
    fit(
        model,
        guide,
        digits,
        TrainConfig(seed=derived_seed(0), elbo=estimator, particles=k, epochs=4, batch_size=64),
        progress=False,
    )
    after = value()
    # From about -44 nats untrained; four epochs gain well over 8 with every estimator.
    assert after > before + 8, (before, after)


def test_estimators_without_a_differentiable_loss_get_the_same_gradient_as_those_with_one(digits):
    """graph trains through loss_and_grads; for a reparameterized guide it is trace's estimator,
    so with the same draws the gradients agree, scaled by 1/batch and added to what .grad held."""
    from pvae.engine.estimators import make_elbo
    from pvae.engine.objectives import backward, loss_module

    model, guide = _pair(digits)
    x = digits.training_batch(digits.train.images(slice(32)))
    grads = {}
    for name in ("trace", "graph"):
        loss_fn = loss_module(model, guide, make_elbo(name))
        loss_fn.estimate(x[:2])
        assert loss_fn.differentiable == (name == "trace")
        for p in loss_fn.parameters():
            p.grad = torch.ones_like(p)  # a gradient already accumulated
        torch.manual_seed(derived_seed(3))
        loss = backward(loss_fn, x, scale=1 / 32)
        grads[name] = (float(loss), [p.grad.clone() for p in loss_fn.parameters()])
    assert grads["graph"][0] == pytest.approx(grads["trace"][0], rel=1e-6)
    for g_graph, g_trace in zip(grads["graph"][1], grads["trace"][1], strict=True):
        assert torch.allclose(g_graph, g_trace, atol=1e-6)
    assert not torch.allclose(grads["trace"][1][0], torch.ones(1))  # the step's own gradient is in there


def test_max_seconds_ends_training_after_the_step_that_spends_it(digits, tmp_path):
    model, guide = _pair(digits)
    run = Run.create(tmp_path / "r", {})
    history = fit(
        model, guide, digits, TrainConfig(seed=derived_seed(0), epochs=5, max_seconds=0.0), run=run, progress=False
    )
    # the budget is checked after every step: a budget of 0 allows exactly one
    assert len(history) == 1 and history[0]["steps"] == 1
    assert run.metrics()[0]["steps"] == 1 and (tmp_path / "r" / "checkpoint.pt").exists()
    full = fit(*_pair(digits), digits, TrainConfig(seed=derived_seed(0), epochs=1), progress=False)
    assert full[0]["steps"] == math.ceil(len(digits.train) / 128)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"elbo": "iwae", "jit": "on"}, "no differentiable loss.*--jit auto"),
        ({"elbo": "graph", "jit": "on"}, "no differentiable loss.*--jit auto"),
        ({"elbo": "dreg", "jit": "on"}, "hook.*--jit auto"),
        ({"elbo": "trace", "alpha": 0.5}, "only renyi take"),
        ({"elbo": "renyi", "alpha": 1.0}, "alpha=1 is the ELBO"),
    ],
)
def test_estimator_settings_that_cannot_train_are_refused(digits, settings, message):
    model, guide = _pair(digits)
    with pytest.raises(ValueError, match=message):
        check_compatible(traits(model, guide), digits, TrainConfig(**settings))


def test_fit_tells_its_log_every_step_and_which_epoch_was_the_last(digits):
    class Recording:
        def __init__(self):
            self.steps, self.epochs = [], []

        def step(self, step, loss):
            self.steps.append(step)

        def epoch(self, step, row, model, guide, last):
            self.epochs.append((step, row["epoch"], last))

    log = Recording()
    model, guide = _pair(digits)
    history = fit(
        model, guide, digits, TrainConfig(epochs=3, batch_size=500, seed=derived_seed(7)), progress=False, log=log
    )
    per_epoch = history[0]["steps"]
    assert log.steps == list(range(1, 3 * per_epoch + 1))
    assert log.epochs == [(per_epoch, 1, False), (2 * per_epoch, 2, False), (3 * per_epoch, 3, True)]
    # a run that --max-seconds stops early: its one epoch is the last
    log = Recording()
    model, guide = _pair(digits)
    fit(model, guide, digits, TrainConfig(epochs=3, max_seconds=0.0, seed=derived_seed(7)), progress=False, log=log)
    assert [e[1:] for e in log.epochs] == [(1, True)]


def test_the_trainer_imports_no_measure_and_its_settings_live_below_it():
    """The trainer validates with :mod:`pvae.engine.bounds`, beside it in the engine, not with the measures above it (at
    module level or inside a function); its settings are :mod:`pvae.engine.trainconfig`'s, which the trainer
    re-exports."""
    import ast
    from pathlib import Path

    import pvae.engine.train
    import pvae.engine.trainconfig

    tree = ast.parse(Path(pvae.engine.train.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    measures = {
        "pvae.measures.evaluate",
        "pvae.measures.diagnostics",
        "pvae.measures.compare",
        "pvae.measures.memory",
        "pvae.measures.encode",
        "pvae.measures.quality",
    }
    assert not imported & measures
    assert pvae.engine.train.TrainConfig is pvae.engine.trainconfig.TrainConfig
    assert pvae.engine.train.check_alpha is pvae.engine.trainconfig.check_alpha
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(elbo="renyi", alpha=1.0)


def test_every_step_of_one_process_is_the_public_step(digits, monkeypatch):
    """One process trains through :func:`pvae.engine.train.step`, once per batch, with the loss, the optimizer and the
    batch as ``step`` takes them; what it returns is the step's loss."""
    import pvae.engine.train

    real, calls = pvae.engine.train.step, []

    def step(loss_fn, optimizer, *args):
        calls.append(args[0].shape[0])
        return real(loss_fn, optimizer, *args)

    monkeypatch.setattr(pvae.engine.train, "step", step)
    model, guide = _pair(digits)
    history = fit(model, guide, digits, TrainConfig(epochs=1, batch_size=500, seed=derived_seed(3)), progress=False)
    n = len(digits.train)
    assert calls == [min(500, n - start) for start in range(0, n, 500)]
    assert history[0]["steps"] == len(calls) and math.isfinite(history[0]["train_loss"])


def test_epochs_left_unset_are_the_datas_own_in_python_as_on_the_command_line(digits):
    """``TrainConfig()`` trains as long as ``pvae train`` does on the same data: the dataset declares its epochs."""
    from pvae.app.train import TrainSettings, run_config
    from pvae.data import default_epochs

    assert TrainConfig().epochs is None
    assert TrainConfig().for_data(digits).epochs == default_epochs(digits) == 100
    assert run_config(TrainSettings()).train.epochs == 100
    fashion = data.DataConfig("fashion-mnist")
    assert run_config(TrainSettings(data="fashion-mnist")).train.epochs == default_epochs(fashion) == 10
    assert TrainConfig(epochs=3).for_data(digits).epochs == 3
    with pytest.raises(ValueError, match="cyclical beta schedule spreads its cycles over --epochs"):
        TrainConfig(beta_schedule="cyclical").schedule()
