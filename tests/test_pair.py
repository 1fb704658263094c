"""The pair contract: the traits of every zoo pair, refused near-misses, model defaults, the checks
that refuse a model and guide that do not fit each other, and the one table of the traits."""

import json
import math
from dataclasses import fields, replace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule

from pvae import data
from pvae.base.sites import DATA, X
from pvae.engine.compatibility import applicable_estimators, check_compatible
from pvae.engine.config import PairConfig, build_pair, resolve
from pvae.engine.estimators import ESTIMATORS
from pvae.engine.likelihoods import LIKELIHOODS
from pvae.engine.pair import DECLARATIONS, Guide, Model, Traits, check_pair, model_defaults, trait_table, traits
from pvae.engine.resolve import absolute, resolve_pair
from pvae.engine.train import TrainConfig
from pvae.guides import GUIDES
from pvae.guides.gaussian import GaussianGuide
from pvae.guides.m2 import M2Guide
from pvae.models import MODELS
from pvae.models.linear import LinearGaussian
from pvae.models.vae import VAE

X_SHAPE = (1, 8, 8)

#: The traits of the VAE with the diagonal Gaussian guide, built with z_dim=2: every default.
VAE_TRAITS = Traits(
    model="VAE",
    guide="GaussianGuide",
    z_dim=2,
    guide_z_dim=2,
    x_shape=X_SHAPE,
    latent_sites=("z",),
    labels="none",
    num_classes=None,
    default_guide="gaussian",
    default_elbo="meanfield",
    defaults=(),
    exact_marginal=False,
    label_prior=False,
    likelihood="Bernoulli",
    requires_binary=True,
    requires_grey=False,
    support=("binary",),
    point_estimate=False,
    mean_field=True,
    classifies=False,
    auxiliary_loss=False,
)

ZOO = [
    (PairConfig("vae", "gaussian"), VAE_TRAITS),
    (PairConfig("vae", "delta"), replace(VAE_TRAITS, guide="DeltaGuide", point_estimate=True)),
    (PairConfig("vae", "fullrank"), replace(VAE_TRAITS, guide="FullRankGuide")),
    (PairConfig("vae", "iaf"), replace(VAE_TRAITS, guide="IAFGuide")),
    (
        PairConfig("vae", likelihood="continuous-bernoulli"),
        replace(
            VAE_TRAITS, likelihood="ContinuousBernoulli", requires_binary=False, requires_grey=True, support=("levels",)
        ),
    ),
    (
        PairConfig("linear"),
        replace(
            VAE_TRAITS,
            model="LinearGaussian",
            defaults=(("hidden", ()), ("likelihood", "gaussian")),
            exact_marginal=True,
            likelihood="Gaussian",
            requires_binary=False,
            support=("binary", "levels", "counts", "real"),
        ),
    ),
    (
        PairConfig("cvae"),
        replace(
            VAE_TRAITS,
            model="CVAE",
            guide="ConditionalGaussianGuide",
            labels="observed",
            num_classes=10,
            default_guide="conditional-gaussian",
            label_prior=True,
        ),
    ),
    (
        PairConfig("m2"),
        replace(
            VAE_TRAITS,
            model="M2",
            guide="M2Guide",
            labels="semi-supervised",
            num_classes=10,
            default_guide="m2",
            default_elbo="enum",
            label_prior=True,
            classifies=True,
            auxiliary_loss=True,
        ),
    ),
    (
        PairConfig("two-layer"),
        replace(
            VAE_TRAITS,
            model="TwoLayerVAE",
            guide="TwoLayerGuide",
            latent_sites=("z", "z1"),
            default_guide="two-layer",
            default_elbo="trace",
            mean_field=False,
        ),
    ),
]


@pytest.mark.parametrize("config,expected", ZOO, ids=[f"{c.model}-{e.guide}" for c, e in ZOO])
def test_every_zoo_pair_has_the_traits_it_declares(config, expected):
    model, guide = build_pair(replace(config, z_dim=2), X_SHAPE)
    assert isinstance(model, Model) and isinstance(guide, Guide)
    assert traits(model, guide) == expected
    assert check_pair(model, guide) == expected
    alone = traits(model)
    assert alone.guide is None and not alone.point_estimate and alone.mean_field and not alone.classifies
    assert (alone.labels, alone.latent_sites, alone.num_classes) == (
        expected.labels,
        expected.latent_sites,
        expected.num_classes,
    )


# --------------------------------------------------------------------------------------------
# Near-miss and retired names.


class _Misspelt(GaussianGuide):
    mean_feild = False


class _SiteTypo(VAE):
    latent_site = ("z",)


class _InstanceTypo(VAE):
    def __init__(self, x_shape):
        super().__init__(x_shape, z_dim=2)
        self.num_clases = 10


class _Retired(VAE):
    conditional = True


class _WrongSide(GaussianGuide):
    labels = "observed"


class _BadLabels(VAE):
    labels = "semi"


@pytest.mark.parametrize(
    "model,guide,message",
    [
        (
            lambda: VAE(X_SHAPE, 2),
            lambda: _Misspelt(X_SHAPE, 2),
            "_Misspelt has an attribute 'mean_feild'.*did you mean mean_field",
        ),
        (lambda: _SiteTypo(X_SHAPE, 2), None, "_SiteTypo has an attribute 'latent_site'.*did you mean latent_sites"),
        (lambda: _InstanceTypo(X_SHAPE), None, "'num_clases'.*did you mean num_classes"),
        (
            lambda: _Retired(X_SHAPE, 2),
            None,
            "'conditional', which pvae no longer reads: declare labels = 'observed'",
        ),
        (lambda: VAE(X_SHAPE, 2), lambda: _WrongSide(X_SHAPE, 2), "_WrongSide declares 'labels', a trait of a model"),
        (
            lambda: _BadLabels(X_SHAPE, 2),
            None,
            "one of 'none', 'observed', 'semi-supervised', got 'semi'",
        ),
    ],
)
def test_misspelt_retired_or_misplaced_traits_are_refused_by_name(model, guide, message):
    with pytest.raises(ValueError, match=message):
        traits(model(), None if guide is None else guide())


def test_names_close_to_a_trait_that_are_not_misspellings_pass():
    # LinearGaussian.marginal is near log_marginal, VAE.label near labels, TwoLayerVAE.z1_dim near z_dim
    model, guide = build_pair(PairConfig("linear"), X_SHAPE)
    assert traits(model, guide).exact_marginal
    assert traits(*build_pair(PairConfig("two-layer", z_dim=2, hidden=(8,)), X_SHAPE)).latent_sites == ("z", "z1")


# --------------------------------------------------------------------------------------------
# How the label is used: one field of three values.


@pytest.mark.parametrize(
    "labels,evaluation,training", [("none", False, False), ("observed", True, True), ("semi-supervised", False, True)]
)
def test_the_label_policy_decides_when_the_pair_gets_labels(labels, evaluation, training):
    from pvae.measures.evaluate import pair_args

    pair = replace(VAE_TRAITS, labels=labels)
    assert (pair.takes_labels(), pair.takes_labels(training=True)) == (evaluation, training)
    model = type("M", (VAE,), {"labels": labels})(X_SHAPE, 2)
    x, y = torch.zeros(3, *X_SHAPE), torch.zeros(3, dtype=torch.long)
    assert len(pair_args(model, x, y)) == 1 + evaluation
    assert len(pair_args(model, x, y, training=True)) == 1 + training
    assert len(pair_args(model, x, None, training=True)) == 1


# --------------------------------------------------------------------------------------------
# A model brings its own defaults.


def test_the_linear_model_brings_its_options_and_the_rest_come_from_its_constructor():
    assert model_defaults(LinearGaussian) == ("gaussian", "meanfield", {"hidden": (), "likelihood": "gaussian"})
    assert resolve(PairConfig("linear")) == PairConfig("linear", "gaussian", 2, (), "gaussian", "mlp", None, None)
    # a flag wins over the model's default; the constructor still refuses what it cannot be
    assert resolve(PairConfig("linear", z_dim=3)).z_dim == 3
    with pytest.raises(ValueError, match="use hidden=\\(\\)"):
        build_pair(PairConfig("linear", hidden=(8,)), X_SHAPE)


def test_options_resolve_to_the_model_then_the_guide_and_resolving_twice_changes_nothing():
    assert resolve(PairConfig()) == PairConfig("vae", "gaussian", 20, (400,), "bernoulli", "mlp", None, None)
    iaf = resolve(PairConfig(guide="iaf"))
    assert (iaf.flows, iaf.aux_weight) == (2, None)
    m2 = resolve(PairConfig("m2"))
    assert (m2.guide, m2.aux_weight) == ("m2", 50.0)
    assert resolve(m2) == m2
    with pytest.raises(ValueError, match="GaussianGuide takes no 'flows' option: drop --flows"):
        resolve(PairConfig(flows=3))


def test_pvae_train_model_linear_needs_no_other_flag(tmp_path):
    from pvae.cli import main

    out = tmp_path / "linear"
    assert main(["train", "--model", "linear", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())["pair"]
    assert (config["hidden"], config["likelihood"], config["z_dim"], config["guide"]) == ([], "gaussian", 2, "gaussian")
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["test"]["elbo"]) and math.isfinite(summary["test"]["log_px"])
    assert summary["test"]["elbo"] <= summary["test"]["log_px"] + 3 * summary["test"]["log_px_se"]


# --------------------------------------------------------------------------------------------
# Pairs that do not fit.


def test_a_model_and_guide_whose_z_dims_disagree_are_refused():
    with pytest.raises(ValueError, match="the model VAE and the guide GaussianGuide disagree on z_dim \\(3 and 4\\)"):
        check_pair(VAE(X_SHAPE, 3), GaussianGuide(X_SHAPE, 4))


def test_a_model_without_a_member_of_the_protocol_is_refused_before_training():
    class Bare(torch.nn.Module):
        z_dim, x_shape = 2, X_SHAPE

        def forward(self, x, y=None):
            pass

    assert not isinstance(Bare(), Model)
    with pytest.raises(ValueError, match="the model Bare has no 'prior', which every model needs"):
        check_pair(Bare(), GaussianGuide(X_SHAPE, 2))


class _NoZ(VAE):
    def forward(self, x, y=None):
        with pyro.plate(DATA, x.shape[0]):
            w = pyro.sample("w", self.prior())
            pyro.sample(X, self.decode(w), obs=x)


class _WGuide(PyroModule):
    z_dim = 2

    def forward(self, x, y=None):
        with pyro.plate(DATA, x.shape[0]):
            pyro.sample("w", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))


def test_a_model_without_a_z_site_is_refused():
    with pytest.raises(ValueError, match="the model _NoZ has no latent site 'z' \\(its latent sites: \\['w'\\]\\)"):
        check_pair(_NoZ(X_SHAPE, 2), _WGuide())


class _Typo(VAE):
    latent_sites = ("z", "z2")


def test_latent_sites_that_the_model_does_not_sample_are_refused():
    with pytest.raises(ValueError, match="_Typo.latent_sites names \\['z2'\\]"):
        check_pair(_Typo(X_SHAPE, 2), GaussianGuide(X_SHAPE, 2))


def test_the_m2_guide_with_the_vae_and_the_gaussian_guide_with_m2_are_refused_naming_both():
    with pytest.raises(
        ValueError, match="VAE and the guide M2Guide do not fit: the guide samples \\['y'\\].*--guide gaussian"
    ):
        build_pair(PairConfig("vae", "m2", z_dim=2, hidden=(8,)), X_SHAPE)
    with pytest.raises(ValueError, match="M2 and the guide GaussianGuide do not fit: .* \\['y'\\].*--guide m2"):
        build_pair(PairConfig("m2", "gaussian", z_dim=2, hidden=(8,)), X_SHAPE)
    with pytest.raises(ValueError, match="does not propose \\['z1'\\].*--guide two-layer"):
        build_pair(PairConfig("two-layer", "gaussian", z_dim=2, hidden=(8,)), X_SHAPE)
    # the M2 guide given the label samples z alone: it fits the CVAE
    check_pair(*build_pair(PairConfig("cvae", "conditional-gaussian", z_dim=2, hidden=(8,)), X_SHAPE))
    assert check_pair(build_pair(PairConfig("cvae", z_dim=2, hidden=(8,)), X_SHAPE)[0], M2Guide(X_SHAPE, 2, (8,)))


def test_checking_a_pair_leaves_the_random_streams_alone():
    model, guide = VAE(X_SHAPE, 2), GaussianGuide(X_SHAPE, 2)
    pyro.set_rng_seed(3)
    check_pair(model, guide)
    after = torch.rand(3)
    pyro.set_rng_seed(3)
    assert torch.equal(after, torch.rand(3))


# --------------------------------------------------------------------------------------------
# Which estimators apply, and the names of a pair.


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits"))


def test_applicable_estimators_follow_the_traits(digits):
    every = dict.fromkeys(ESTIMATORS, True)
    vae = traits(*build_pair(PairConfig(z_dim=2, hidden=(8,)), digits.x_shape))
    assert applicable_estimators(vae, digits, TrainConfig()) == every
    two_layer = traits(*build_pair(PairConfig("two-layer", z_dim=2, hidden=(8,)), digits.x_shape))
    reasons = applicable_estimators(two_layer, digits, TrainConfig())
    assert [n for n, why in reasons.items() if why is not True] == ["meanfield", "tcvae"]
    assert "use --elbo trace" in reasons["meanfield"] and "use --elbo trace" in reasons["tcvae"]
    delta = replace(vae, point_estimate=True)
    assert all("point-mass guide" in why for why in applicable_estimators(delta, digits, TrainConfig()).values())
    few = data.load(data.DataConfig("digits", labels=100))
    m2 = traits(*build_pair(PairConfig("m2", z_dim=2, hidden=(8,)), few.x_shape))
    reasons = applicable_estimators(m2, few, TrainConfig(elbo="enum"))
    assert [n for n, why in reasons.items() if why is True] == ["enum"]
    with pytest.raises(ValueError, match="only a semi-supervised model uses"):
        check_compatible(vae, few)


def test_resolve_pair_takes_the_preset_then_the_models_defaults(tmp_path, monkeypatch):
    assert resolve_pair("ae") == ("vae", "delta", "meanfield", 0.0)
    assert resolve_pair("m2") == ("m2", "m2", "enum", 1.0)
    assert resolve_pair("two-layer", elbo="iwae") == ("two-layer", "two-layer", "iwae", 1.0)
    with pytest.raises(ValueError, match="--model ae means --guide delta; drop --guide gaussian"):
        resolve_pair("ae", guide="gaussian")
    with pytest.raises(ValueError, match="unknown model 'vea'"):
        resolve_pair("vea")
    monkeypatch.chdir(tmp_path)
    assert absolute("my.py:Net") == f"{tmp_path.resolve() / 'my.py'}:Net"
    assert (absolute("vae"), absolute("pkg.mod:Net")) == ("vae", "pkg.mod:Net")


def test_a_schedule_of_a_beta_of_0_is_refused_once_by_the_training_config():
    from pvae.engine.trainconfig import TrainConfig

    assert resolve_pair("ae") == ("vae", "delta", "meanfield", 0.0)  # the names alone: the schedule is not theirs
    with pytest.raises(ValueError, match="--beta-schedule cyclical moves beta from 0 up to --beta, which is 0 here"):
        TrainConfig(beta=0.0, beta_schedule="cyclical")
    assert TrainConfig(beta=0.0).schedule().beta == 0.0


# --------------------------------------------------------------------------------------------
# The one table of the traits.

REGISTRIES = {"model": MODELS, "guide": GUIDES, "likelihood": LIKELIHOODS}


def test_the_declarations_give_the_records_defaults():
    defaults = {f.name: f.default for f in fields(Traits)}
    values = [d for d in DECLARATIONS if d.args is None]
    assert {d.name: d.default for d in values if d.name != "defaults"} == {
        d.name: defaults[d.name] for d in values if d.name != "defaults"
    }
    assert (defaults["defaults"], Traits("M").options) == ((), {})  # the model's {} as sorted pairs
    methods = {"log_marginal": "exact_marginal", "label_prior": "label_prior", "classify": "classifies"}
    assert {methods.get(d.name, d.name) for d in DECLARATIONS if d.args is not None} <= set(defaults)


def test_the_trait_table_has_a_row_a_trait_with_the_built_ins_that_declare_it():
    table = trait_table(REGISTRIES)
    lines = table.splitlines()
    assert table.endswith("|\n") and len(lines) == 2 + len(DECLARATIONS) == 17
    assert lines[0] == "| trait | on | default | meaning | declared by |"
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in lines[2:]}
    assert rows["`latent_sites`"][1:3] == ["model", '`("z",)`']
    assert rows["`latent_sites`"][4] == '`two-layer` (`("z", "z1")`) |'
    assert rows["`labels`"][4] == '`cvae` (`"observed"`), `m2` (`"semi-supervised"`) |'
    assert rows["`num_classes`"][4] == "`cvae`, `m2` (constructor argument) |"
    assert rows["`log_marginal(x)`"][2:] == ["absent", "exact log p(x) per datapoint", "`linear` |"]
    assert rows["`auxiliary_loss(x, y)`"][4] == "`m2` |"
    assert rows["`mean_field`"][2] == "`True`" and rows["`mean_field`"][4] == "`two-layer` |"
    assert "q(z\\|x) is a point mass" in rows["`point_estimate`"][3]  # a pipe inside a cell is escaped
    # a likelihood's support in another order is the default; only a narrower one is declared
    assert "gaussian" not in rows["`support`"][4].replace("continuous-bernoulli", "")
    assert rows["`support`"][4].startswith('`bernoulli` (`("binary",)`), `continuous-bernoulli` (`("levels",)`)')
    # without a registry, a side's column is empty
    assert (
        trait_table({}).splitlines()[2]
        == '| `latent_sites` | model | `("z",)` | the latent sites beta scales, in model and guide |  |'
    )
