"""``--device``: what it resolves to, what it refuses, and that the CPU computes what it computed before.

No GPU is needed: where a test asks about one, ``torch.cuda`` is patched to say what a machine has.
"""

import json

import pytest
import torch

from pvae import cli
from pvae.base.device import DeviceConfig, available_devices, describe_device, module_device, resolve_device, to_device
from pvae.base.rng import rng_state, set_rng_state
from pvae.base.runs import Run
from pvae.engine.config import restore

TRAIN = ["train", "--epochs", "2", "--hidden", "16", "--z-dim", "3", "--samples", "20", "--no-progress"]


def _no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def _gpus(monkeypatch, count: int):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_config_takes_the_names_of_devices(name):
    assert DeviceConfig(name).device == name


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", "cpu:0", ""])
def test_device_config_refuses_other_names_with_the_list(name):
    with pytest.raises(ValueError, match="--device must be one of auto, cpu, cuda, cuda:N"):
        DeviceConfig(name)


def test_auto_takes_a_gpu_when_there_is_one_and_the_cpu_otherwise(monkeypatch):
    _no_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    assert describe_device("auto", torch.device("cpu")) == "cpu (auto: no GPU)"
    assert available_devices() == ["cpu"]
    _gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert describe_device("auto", torch.device("mps")) == "mps (auto: no CUDA GPU, MPS found)"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("cuda", "no CUDA device here (torch.cuda.is_available() is False); this machine has: cpu"),
        ("cuda:1", "no CUDA device here"),
        ("mps", "no MPS device here (torch.backends.mps.is_available() is False); this machine has: cpu"),
    ],
)
def test_a_device_the_machine_lacks_is_refused_naming_those_it_has(monkeypatch, name, words):
    _no_gpu(monkeypatch)
    with pytest.raises(ValueError) as error:
        resolve_device(name)
    assert str(error.value).startswith(f"--device {name}: ") and words in str(error.value)
    assert "use --device cpu or auto" in str(error.value)


def test_a_gpu_number_beyond_those_there_are_is_refused(monkeypatch):
    _gpus(monkeypatch, 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\), numbered from 0: "
                       r"cpu, cuda:0, cuda:1"):  # fmt: skip
        resolve_device("cuda:2")


def test_module_device_and_to_device_follow_the_module():
    layer = torch.nn.Linear(2, 3)
    assert module_device(layer) == torch.device("cpu")
    assert module_device(torch.nn.Identity()) == torch.device("cpu")  # no tensor: the host
    x = torch.ones(2)
    assert to_device(x, torch.device("cpu")) is x  # already there: no copy
    assert to_device(None, torch.device("cpu")) is None


def test_every_command_that_computes_takes_device():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in cli.COMMANDS:
        options = sub.choices[command]._option_string_actions
        if command in cli.READERS:  # tables and pages of what others computed: a --device would do nothing
            assert "--device" not in options, command
            continue
        assert "--device" in options, command
        assert options["--device"].default == "auto", command


def _metrics(out) -> tuple[list, dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    summary = json.loads((out / "summary.json").read_text())
    return rows, {
        k: v for k, v in summary["test"].items() if k not in ("seconds", "model_id")
    }  # the id names a model, not a number


def test_cpu_and_auto_on_a_machine_without_a_gpu_give_the_same_numbers_bit_for_bit(tmp_path, monkeypatch, capsys):
    _no_gpu(monkeypatch)
    runs = {}
    for name in ("cpu", "auto"):
        out = tmp_path / name
        assert cli.main([*TRAIN, "--out", str(out), "--device", name]) == 0
        banner = capsys.readouterr().err.splitlines()[0]
        assert banner.endswith(f"on {'cpu (auto: no GPU)' if name == 'auto' else 'cpu'} → {out}"), banner
        runs[name] = _metrics(out)
    assert runs["cpu"] == runs["auto"]  # every float of metrics.jsonl and the test summary, exactly
    # and the Python API, which moves nothing, computes the same: the run restores and re-evaluates alike
    run, config, dataset, model, guide = restore(tmp_path / "cpu")
    assert module_device(model) == module_device(guide) == torch.device("cpu")


def test_auto_says_the_device_in_one_line(tmp_path, monkeypatch, capsys):
    _no_gpu(monkeypatch)
    out = tmp_path / "r"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    for argv in (["evaluate", str(out), "--samples", "5"], ["sample", str(out), "-n", "4"], ["plot", str(out)]):
        assert cli.main([*argv, "--device", "auto"]) == 0
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("device: ")]
        assert lines == ["device: cpu (auto: no GPU)"], argv
    assert cli.main(["evaluate", str(out), "--samples", "5", "--device", "cpu"]) == 0
    assert "device: cpu\n" in capsys.readouterr().err


def test_restore_reads_the_checkpoint_onto_the_host_and_moves_it(tmp_path, monkeypatch):
    """A checkpoint written on a GPU holds CUDA tensors; ``map_location`` reads them onto the CPU."""
    out = tmp_path / "r"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0
    calls = []
    original = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    _, _, _, model, guide = restore(out, torch.device("cpu"))
    assert calls == ["cpu"]
    # what restore loaded is what was saved, on the device asked for
    saved = original(out / "checkpoint.pt", weights_only=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["model"][name]) and tensor.device == torch.device("cpu")


def test_a_checkpoint_with_the_rng_states_of_a_gpu_resumes_on_the_cpu(tmp_path, monkeypatch):
    """The CUDA generators' states of a GPU run are skipped where there is no GPU; the CPU's are restored."""
    _no_gpu(monkeypatch)
    out = tmp_path / "r"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0
    run = Run(out)
    state = run.load_checkpoint()
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]  # as torch.cuda.get_rng_state_all() gives
    run.save_checkpoint(state)
    assert cli.main([*TRAIN, "--out", str(out), "--device", "cpu", "--resume"]) == 0
    assert len(run.metrics()) == 2
    # and set_rng_state restores the CPU's generator from such a checkpoint exactly
    saved = rng_state()
    saved["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    expected = torch.rand(3)
    set_rng_state(saved)
    assert torch.equal(torch.rand(3), expected)


def test_the_memory_check_still_builds_on_the_meta_device():
    from pvae.engine.config import PairConfig
    from pvae.measures.memory import estimate_step_memory

    estimate = estimate_step_memory(PairConfig(z_dim=4, hidden=(16,)), (1, 8, 8), 10, 32, 1)
    # 8·8 inputs, 16 hidden, 2·4 encoder outputs: (64·16 + 16 + 16·8 + 8) + (4·16 + 16 + 16·64 + 64) weights
    weights = (64 * 16 + 16 + 16 * 8 + 8) + (4 * 16 + 16 + 16 * 64 + 64)
    assert estimate.parameters == 4 * weights * 4  # four float32 copies of each


# Tensors that models, guides and losses create follow the device of the module or input that uses
# them. Without a GPU the meta device shows it: a tensor made on the CPU and met by one on ``meta``
# raises "Tensor on device cpu is not on the expected device meta!".
PAIRS = [
    ("vae", "gaussian"),
    ("vae", "fullrank"),
    ("vae", "iaf"),
    ("vae", "delta"),
    ("cvae", "conditional-gaussian"),
    ("m2", "m2"),
    ("two-layer", "two-layer"),
    ("linear", "gaussian"),
]


@pytest.mark.parametrize(("model_name", "guide_name"), PAIRS)
def test_every_pair_traces_on_another_device_without_a_tensor_left_on_the_cpu(model_name, guide_name):
    import pyro
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    from pvae.engine.config import PairConfig, build_pair
    from pvae.measures.evaluate import pair_args

    shape = (5,) if model_name == "linear" else (1, 8, 8)
    model, guide = build_pair(PairConfig(model=model_name, guide=guide_name), shape, 10)
    model, guide = model.to("meta"), guide.to("meta")
    x = torch.zeros(3, *shape, device="meta")
    args = pair_args(model, x, torch.zeros(3, dtype=torch.long, device="meta"), training=True)
    # validation reads values (`.item()`), which meta tensors do not have
    with pyro.validation_enabled(False):
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
        log_p = model_trace.log_prob_sum()
        prior_draw = model.prior((3,)).sample()
    assert log_p.device.type == "meta" and prior_draw.device.type == "meta"
    latents = [s for s in guide_trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]
    assert latents and all(s["value"].device.type == "meta" for s in latents)


def test_the_linear_models_closed_forms_and_the_losses_beta_follow_the_device():
    from pvae.engine.config import PairConfig, build_pair
    from pvae.engine.train import TrainConfig, make_loss

    model, _ = build_pair(PairConfig(model="linear"), (5,), 10)
    model = model.to("meta")
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        assert model.marginal().covariance_matrix.device.type == "meta"
        assert model.posterior(torch.zeros(3, 5, device="meta")).mean.device.type == "meta"
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(8,)), (1, 8, 8), 10)
    loss = make_loss(model.to("meta"), guide.to("meta"), TrainConfig(beta=4.0, beta_schedule="linear-warmup"))
    assert loss.beta.device.type == "meta"  # one tensor, on the pair's device, behind both wrappers


def test_fit_keeps_the_data_on_the_host_and_moves_each_batch(monkeypatch):
    """Each training batch goes through ``to_device`` once, from the host; the stored splits stay compact."""
    import math

    import pvae.engine.train
    from pvae import data
    from pvae.engine.config import PairConfig, build_pair
    from pvae.engine.train import TrainConfig, fit

    digits = data.load(data.DataConfig("digits"))
    moved = []
    original = pvae.engine.train.to_device

    def recording(x, device):
        if x is not None and x.is_floating_point():
            moved.append((x.device.type, x.shape[0]))
        return original(x, device)

    monkeypatch.setattr(pvae.engine.train, "to_device", recording)
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(16,)), digits.x_shape)
    fit(model, guide, digits, TrainConfig(epochs=1, batch_size=500), progress=False)
    steps = math.ceil(len(digits.train) / 500)
    # two datapoints for the first (validated) pass, two batches to compile the loss and check it on,
    # then every batch of the epoch, each from the host
    first = [("cpu", 2), ("cpu", 500), ("cpu", 500)]
    assert moved == first + [("cpu", min(500, len(digits.train) - 500 * i)) for i in range(steps)]
    assert digits.train.data.dtype == torch.uint8  # grey levels as bytes: converted per batch
