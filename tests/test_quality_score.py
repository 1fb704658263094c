"""``pvae quality``'s scorer: the pieces on inputs whose answer is known, then a trained pair end to end."""

import json

import pytest
import torch

from pvae.cli import main
from pvae.measures.quality.score import QualityConfig, class_scores, fitted_gaussian, prior_holes
from tests.conftest import derived_seed


@pytest.mark.statistical
def test_prior_holes_are_one_percent_when_the_codes_fill_the_prior_and_most_draws_when_they_do_not():
    g = torch.Generator().manual_seed(derived_seed(0))
    draws = torch.randn(3000, 4, generator=g)
    filled = prior_holes(torch.randn(3000, 4, generator=g), draws)
    # 1% of draws expected; the 99% quantile of 3000 neighbour distances and 3000 draws add a binomial
    # spread of about 0.3% each: 0–3% holds far beyond 1e-3.
    assert 0.0 < filled < 0.03
    shrunk = prior_holes(0.3 * torch.randn(3000, 4, generator=g), draws)
    assert shrunk > 0.5  # a code cloud of a third of the prior's width leaves most prior draws far from any code
    shifted = prior_holes(torch.randn(3000, 4, generator=g) + torch.tensor([4.0, 0, 0, 0]), draws)
    assert shifted > filled + 0.3


def test_prior_holes_need_two_codes():
    with pytest.raises(ValueError, match="at least 2 codes"):
        prior_holes(torch.zeros(1, 3), torch.zeros(5, 3))


def test_class_scores_count_votes_and_coverage_exactly():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.6, 0.4, 0.0]])
    real = torch.tensor([1 / 3, 1 / 3, 1 / 3])
    scores = class_scores(probs, real)
    assert scores["confidence"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.6) / 4)
    assert scores["class_shares"] == pytest.approx([0.75, 0.25, 0.0])
    # class 0 gets 0.75 ≥ 1/6, class 1 gets 0.25 ≥ 1/6, class 2 gets 0 < 1/6
    assert scores["coverage"] == pytest.approx(2 / 3)


@pytest.mark.statistical
def test_fitted_gaussian_recovers_the_codes_moments():
    g = torch.Generator().manual_seed(derived_seed(1))
    mix = torch.tensor([[1.0, 0.0], [0.8, 0.5]])
    codes = torch.randn(20000, 2, generator=g) @ mix.T + torch.tensor([2.0, -1.0])
    fitted = fitted_gaussian(codes)
    assert fitted.mean.tolist() == pytest.approx([2.0, -1.0], abs=0.05)
    # sd of a covariance entry from 20,000 draws is below 0.015: 0.06 is four of them
    assert torch.allclose(fitted.covariance_matrix.float(), mix @ mix.T, atol=0.06)


def test_config_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="cutoff"):
        QualityConfig(cutoff=0.5)
    with pytest.raises(ValueError, match="samples"):
        QualityConfig(samples=0)
    with pytest.raises(ValueError, match="neighbours"):
        QualityConfig(neighbours=0)


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """A VAE, an autoencoder and a CVAE trained on digits (60 epochs: long enough to draw digits)."""
    root = tmp_path_factory.mktemp("quality")
    runs = {}
    pairs = {"vae": [], "ae": ["--guide", "delta", "--beta", "0"], "cvae": ["--model", "cvae"]}
    for name, extra in pairs.items():
        out = root / name
        argv = ["train", "--epochs", "60", "--z-dim", "8", "--hidden", "64", "--out", str(out), "--no-progress"]
        argv += ["--seed", str(derived_seed(10))]  # the orderings asserted below hold for any training seed
        assert main([*argv, *extra]) == 0
        runs[name] = out
    return root, runs


def test_quality_of_a_trained_vae_orders_its_sets_as_expected(digits_runs, quality_data, capsys):
    _, runs = digits_runs
    assert main(["quality", str(runs["vae"]), "--seed", "3"]) == 0
    results = json.loads((runs["vae"] / "quality" / "quality.json").read_text())
    sets = results["sets"]
    assert results["samples"] == 360  # digits' whole test split, both sides the same size
    assert results["classifier"]["test_accuracy"] > 0.9
    # real training images are the closest set to the test images, reconstructions next, prior samples last
    assert results["reference"]["fd"] < sets["reconstructions"]["fd"] < sets["prior"]["fd"]
    assert results["reference"]["precision"] > 0.8 and results["reference"]["recall"] > 0.8
    # the decoder's mean is blurrier than the data and than the draws of the likelihood it averages
    assert sets["prior"]["high_frequency_fraction"] < results["data"]["high_frequency_fraction"]
    assert sets["prior"]["high_frequency_fraction"] < sets["likelihood draws"]["high_frequency_fraction"]
    assert sets["prior"]["gradient_magnitude"] < results["data"]["gradient_magnitude"]
    # draws of the VAE's aggregate posterior cover most of the prior (the share measured is about 0.05)
    assert results["prior_holes"] < 0.3
    assert "does not generate a chosen class" in results["notes"]["per_class"]
    for figure in ("spectra", "likelihood_draws"):
        assert (runs["vae"] / "quality" / "figures" / f"{figure}.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"{sets['prior']['fd']:11.3f}" in printed and "360 images a set" in printed  # the JSON's numbers


def test_the_autoencoders_samples_from_n01_are_labelled_and_its_fitted_gaussian_does_better(digits_runs, quality_data):
    _, runs = digits_runs
    assert main(["quality", str(runs["ae"])]) == 0
    results = json.loads((runs["ae"] / "quality" / "quality.json").read_text())
    assert "never saw such draws" in results["sets"]["prior"]["source"]
    assert results["sets"]["fitted prior"]["fd"] < results["sets"]["prior"]["fd"]
    assert results["prior_holes"] > 0.5  # nothing pulled its codes onto N(0, I): most prior draws land far from them


def test_quality_refuses_a_missing_classifier_when_told_not_to_train(digits_runs, tmp_path, monkeypatch, capsys):
    _, runs = digits_runs
    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "empty"))
    assert main(["quality", str(runs["vae"]), "--no-train-classifier", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "classifier" in err and "--no-train-classifier" not in err.split("error:")[0]
    assert not (tmp_path / "q" / "quality.json").exists()


def test_standard_fid_without_weights_says_where_it_looked(digits_runs, tmp_path, monkeypatch, capsys):
    _, runs = digits_runs
    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "empty"))
    monkeypatch.delenv("PVAE_INCEPTION", raising=False)
    assert main(["quality", str(runs["vae"]), "--inception", "auto", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "PVAE_INCEPTION" in err and "inception-2015-12-05.pt" in err
    assert not (tmp_path / "q").exists()


def test_a_conditional_model_is_scored_class_by_class(digits_runs, quality_data):
    _, runs = digits_runs
    assert main(["quality", str(runs["cvae"]), "--samples", "200"]) == 0
    results = json.loads((runs["cvae"] / "quality" / "quality.json").read_text())
    per_class = results["per_class"]
    assert sorted(per_class, key=int) == [str(c) for c in range(10)]
    assert sum(p["n"] for p in per_class.values()) == 200  # every real test image scored is in its class's row
    # the classifier recognises the class asked for in most samples (about 0.9 measured after 60 epochs)
    accuracy = sum(p["accuracy"] * p["n"] for p in per_class.values()) / 200
    assert accuracy > 0.6
    assert "per_class" not in results["notes"]


def test_a_conditional_model_without_a_label_prior_draws_the_test_labels_and_says_so(digits_runs, quality_data):
    from dataclasses import replace

    from pvae import data
    from pvae.engine.config import restore
    from pvae.measures.quality.classifier import load_classifier
    from pvae.measures.quality.score import quality

    _, runs = digits_runs
    _, config, _, model, guide = restore(runs["cvae"])
    model.__class__ = type("NoLabelPrior", (type(model),), {"label_prior": None})
    grey_config = replace(config.data, binarize="none")
    results = quality(model, guide, data.load(grey_config), load_classifier(grey_config), QualityConfig(samples=100))
    assert "the real test images' labels" in results["notes"]["label_prior"]
    assert results["sets"]["prior"]["coverage"] > 0.5  # the classes asked for are the test labels: most are seen


def test_a_reference_embedded_once_scores_as_the_one_quality_builds_and_a_mismatched_one_is_refused(
    digits_runs, quality_data
):
    from dataclasses import replace

    from pvae import data
    from pvae.engine.config import restore
    from pvae.measures.quality.classifier import load_classifier
    from pvae.measures.quality.score import Reference, quality

    _, runs = digits_runs
    _, config, _, model, guide = restore(runs["vae"])
    grey_config = replace(config.data, binarize="none")
    grey, classifier = data.load(grey_config), load_classifier(grey_config)
    settings = QualityConfig(samples=100, seed=5)
    built = quality(model, guide, grey, classifier, settings)
    reference = Reference(classifier, grey.test.images(slice(100)), grey.test.y[:100])
    given = quality(model, guide, grey, classifier, settings, reference=reference)
    for name in ("prior", "fitted prior", "reconstructions"):
        assert given["sets"][name]["fd"] == built["sets"][name]["fd"]
        assert given["sets"][name]["recall"] == built["sets"][name]["recall"]
    assert given["reference"] == built["reference"]
    with pytest.raises(ValueError, match="holds 100 test images"):
        quality(model, guide, grey, classifier, QualityConfig(samples=50), reference=reference)


@pytest.fixture(scope="module")
def count_table_runs(tmp_path_factory):
    """Digits as a table of 64 counts (0..16) with a label column, and the same table without it."""
    import pandas as pd
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("quality_table")
    bunch = load_digits()
    table = pd.DataFrame(bunch.data.astype("int64"), columns=[f"p{i}" for i in range(64)])
    table.assign(digit=bunch.target).to_csv(root / "labelled.csv", index=False)
    table.iloc[:400].to_csv(root / "unlabelled.csv", index=False)
    runs = {}
    for name, extra in {"labelled": ["--label-column", "digit"], "unlabelled": []}.items():
        out = root / name
        argv = ["train", "--data", str(root / f"{name}.csv"), "--epochs", "40", "--z-dim", "8", "--hidden", "64"]
        argv += ["--seed", str(derived_seed(11)), "--out", str(out), "--no-progress", "--samples", "10", *extra]
        assert main(argv) == 0
        runs[name] = out
    return runs


def test_quality_of_a_labelled_table_adds_the_classifiers_scores_to_the_predictive_checks(count_table_runs, capsys):
    run = count_table_runs["labelled"]
    assert main(["quality", str(run), "--seed", "3", "--replicates", "20", "--no-progress"]) == 0
    results = json.loads((run / "quality" / "quality.json").read_text())
    assert results["posterior_predictive"]["kind"] == "counts" and results["posterior_predictive"]["rows"] == 180
    sets = results["sets"]
    assert set(sets) == {"prior", "fitted prior", "reconstructions"}  # no likelihood draws: sharpness is for images
    assert results["samples"] == 180 and "data" not in results  # digits' test split of 10%
    assert results["classifier"]["test_accuracy"] > 0.85  # measured 0.97-0.99 over seeds
    # as for images: real training rows are the closest set to the test rows, reconstructions next, the prior last
    assert results["reference"]["fd"] < sets["reconstructions"]["fd"] < sets["prior"]["fd"]
    assert results["reference"]["recall"] > 0.6 and results["reference"]["coverage"] == 1.0  # measured 0.79
    printed = capsys.readouterr().out
    assert "posterior predictive checks" in printed and "180 rows a set" in printed
    assert f"{sets['prior']['fd']:11.3f}" in printed and "HF power" not in printed


def test_quality_of_an_unlabelled_table_says_why_it_has_no_classifier(count_table_runs, capsys):
    run = count_table_runs["unlabelled"]
    assert main(["quality", str(run), "--replicates", "20", "--no-progress"]) == 0
    results = json.loads((run / "quality" / "quality.json").read_text())
    assert "sets" not in results and "no labels" in results["classifier_skipped"]
    assert "no classifier scores: the data have no labels" in capsys.readouterr().out
    assert main(["quality", str(run), "--inception", "auto"]) == 2
    assert "--inception scores images" in capsys.readouterr().err


def test_a_classifier_that_could_not_be_kept_is_not_trained(count_table_runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "afile"))
    run = count_table_runs["labelled"]
    assert main(["quality", str(run), "--replicates", "20", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "the classifier cache (in --data-dir, or $PVAE_DATA)" in err and "which is a file" in err
    assert "quality: features of a classifier" not in err  # refused before any training
