"""Variable-width ternary networks: training on real data, switchable BN, shared ternary weights,
bundles that round-trip bit-exactly and refuse to load when damaged."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamhar.models.bundle import BundleError, check_channels, load_bundle, save_bundle
from streamhar.models.config import ModelConfig
from streamhar.models.cost import layer_shapes, macs
from streamhar.models.data import normalization_stats
from streamhar.models.har_cnn import HARNet
from streamhar.models.train import TrainSettings, distill_loss, predict, train
from streamhar.windowing.sliding import make_windows

WIDTHS = (0.25, 0.5, 1.0)


@pytest.fixture(scope="module")
def usc_small(usc_recordings):
    """Subject 1 for training, subject 2 for validation: a few thousand real windows."""
    train_recs = [r for r in usc_recordings if r.subject == "1"]
    val_recs = [r for r in usc_recordings if r.subject == "2"][::5]
    mean, std = normalization_stats(train_recs)
    norm = lambda w: ((w.x - mean[None, :, None]) / std[None, :, None]).astype(np.float32)
    tr, va = make_windows(train_recs, 100, 50), make_windows(val_recs, 100, 100)
    return norm(tr), tr.y, norm(va), va.y, mean, std, train_recs[0]


def tiny_config(**overrides) -> ModelConfig:
    base = dict(in_channels=6, n_classes=12, window=100, channels=(8, 16), kernels=(5, 3), pools=(2, 2),
                widths=WIDTHS)
    return ModelConfig(**{**base, **overrides})


def test_training_on_real_windows_lowers_the_loss(usc_small):
    x, y, xv, yv, *_ = usc_small
    torch.manual_seed(0)
    model = HARNet(tiny_config(channels=(16, 32)))
    losses = []
    train(model, x, y, xv, yv, TrainSettings(epochs=1, batch_size=32, max_steps=60, seed=1, lr=1e-2),
          on_step=losses.append)
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_distillation_loss_is_zero_only_for_matching_outputs():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.4, 0.3]])
    assert distill_loss(teacher.clone(), teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(teacher + 5.0, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)   # shift-invariant
    flipped = teacher.flip(1)
    assert distill_loss(flipped, teacher, 2.0).item() > 0.1
    # T² keeps the gradient scale comparable across temperatures (Hinton et al. 2015)
    assert distill_loss(flipped, teacher, 4.0).item() > 0.5 * distill_loss(flipped, teacher, 1.0).item() / 4


def test_in_place_distillation_pulls_narrow_widths_towards_the_full_width(usc_small):
    """Same seed, same steps: with α = 1 the narrow width learns only the full width's soft outputs,
    so its output distribution ends up closer to the full width's (lower KL) than with labels alone."""
    x, y, xv, yv, *_ = usc_small
    kl = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(0)
        model = HARNet(tiny_config(channels=(16, 32)))
        train(model, x, y, xv, yv, TrainSettings(epochs=5, batch_size=32, max_steps=150, seed=1, lr=1e-2,
                                                 distill=alpha, temperature=2.0))
        full, narrow = torch.from_numpy(predict(model, xv, 1.0)), torch.from_numpy(predict(model, xv, 0.25))
        kl[alpha] = distill_loss(narrow, full, 1.0).item()
    assert kl[1.0] < 0.9 * kl[0.0]


def test_cosine_schedule_decays_the_learning_rate_to_zero(usc_small):
    x, y, xv, yv, *_ = usc_small
    steps_per_epoch = -(-len(y) // 64)
    history = train(HARNet(tiny_config()), x, y, xv, yv,
                    TrainSettings(epochs=2, batch_size=64, seed=1, lr=1e-2, schedule="cosine", patience=5))
    lrs = [e["lr"] for e in history.epochs]
    assert history.steps == 2 * steps_per_epoch
    assert lrs[0] == pytest.approx(1e-2 * 0.5 * (1 + np.cos(np.pi / 2)), rel=0.05)   # half way: lr/2
    assert lrs[1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="schedule"):
        train(HARNet(tiny_config()), x, y, xv, yv, TrainSettings(epochs=1, schedule="step"))


def test_switchable_bn_keeps_statistics_per_width(usc_small):
    x, *_ = usc_small
    model = HARNet(tiny_config())
    bns = model.branches[0].blocks[0].bn.bns
    assert [bn.num_features for bn in bns] == [2, 4, 8]
    before = [bn.running_mean.clone() for bn in bns]
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x[:64]), 0.5)
    assert torch.equal(bns[0].running_mean, before[0]) and torch.equal(bns[2].running_mean, before[2])
    assert not torch.equal(bns[1].running_mean, before[1])
    with torch.no_grad():
        model(torch.from_numpy(x[:64]), 1.0)
    # In the second block the narrow layer sees fewer input channels: other statistics than the
    # same channels of the full layer, which a shared BN would have mixed up.
    second = model.branches[0].blocks[1].bn.bns
    assert not torch.allclose(second[1].running_mean, second[2].running_mean[:8])


def test_ternary_weights_are_three_valued_and_shared_across_widths():
    model = HARNet(tiny_config())
    conv = model.branches[0].blocks[1].conv
    wq = conv.quantizer(conv.weight).detach()
    for channel in wq:
        values = torch.unique(channel)
        assert len(values) <= 3
        nonzero = values[values != 0].abs()
        assert torch.allclose(nonzero, nonzero[0].expand_as(nonzero))   # ±α only
    # The narrow network's weights are the first channels of the full network's, unchanged.
    x = torch.randn(1, 8, 50)
    narrow = conv(x[:, :2], 4)
    expected = torch.nn.functional.conv1d(x[:, :2], wq[:4, :2], padding=1)
    assert torch.equal(narrow, expected)


def test_macs_match_the_layers_actually_run():
    cfg = tiny_config()
    model = HARNet(cfg).eval()
    counted = []

    def hook(module, inputs, output):
        w = module.quantizer(module.weight)
        counted.append(output.shape[-1] * inputs[0].shape[1] * output.shape[1] * w.shape[-1])

    for block in model.branches[0].blocks:
        block.conv.register_forward_hook(hook)
    for width in WIDTHS:
        counted.clear()
        model(torch.randn(1, 6, 100), width)
        fc = cfg.width_channels(width)[-1] * cfg.n_classes
        assert macs(cfg, width) == sum(counted) + fc
    assert [l["out"] for l in layer_shapes(cfg, 0.25)] == [2, 4, 12]


def test_late_and_dynamic_fusion_run_at_every_width():
    groups = ((0, 1, 2), (3, 4, 5))
    for fusion in ("late", "dynamic"):
        model = HARNet(tiny_config(fusion=fusion, groups=groups))
        for width in WIDTHS:
            assert model(torch.randn(3, 6, 100), width).shape == (3, 12)
    with pytest.raises(ValueError, match="needs at least two sensor groups"):
        tiny_config(fusion="late")


def _saved(tmp_path, usc_small, name="m.safetensors"):
    *_, mean, std, rec = usc_small
    model = HARNet(tiny_config()).eval()
    meta = {"dataset": "usc-had", "rate": 100.0, "window": 100, "stride": 100,
            "channels": list(rec.channel_names), "units": [c.unit for c in rec.channels],
            "class_names": list(rec.class_names)}
    return model, save_bundle(tmp_path / name, model, mean, std, meta)


def test_bundle_round_trips_bit_exactly(tmp_path, usc_small):
    x, *_ = usc_small
    model, path = _saved(tmp_path, usc_small)
    bundle = load_bundle(path)
    for key, value in model.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[key], value), key
    with torch.no_grad():
        for width in WIDTHS:
            assert torch.equal(bundle.model(torch.from_numpy(x[:16]), width), model(torch.from_numpy(x[:16]), width))
    assert bundle.config == model.cfg
    assert np.array_equal(bundle.mean, usc_small[4])
    assert b"pickle" not in path.read_bytes()[:200]


def test_damaged_bundles_are_refused_clearly(tmp_path, usc_small):
    _, path = _saved(tmp_path, usc_small)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"truncated\.safetensors: not a readable model bundle"):
        load_bundle(truncated)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    header["__metadata__"]["version"] = "99"
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    wrong = tmp_path / "v99.safetensors"
    wrong.write_bytes(len(new_header).to_bytes(8, "little") + new_header + data[8 + header_len:])
    with pytest.raises(BundleError, match=r"bundle version '99', this streamhar reads version 1"):
        load_bundle(wrong)
    with pytest.raises(BundleError, match=r"bundle file not found"):
        load_bundle(tmp_path / "absent.safetensors")
    with pytest.raises(BundleError, match=r"no bundled model 'nope'"):
        load_bundle("bundled:nope")


def test_wrong_channels_for_the_source_are_named(tmp_path, usc_small):
    _, path = _saved(tmp_path, usc_small)
    bundle = load_bundle(path)
    dsads_like = ["T.acc.x", "T.acc.y", "T.acc.z"]
    with pytest.raises(BundleError, match=r"has no channel 'hip.acc.x'"):
        check_channels(bundle, dsads_like, ["m/s^2"] * 3, "source replay:dsads:p6")
    units = ["m/s^2"] * 3 + ["dps"] * 3
    with pytest.raises(BundleError, match=r"channel 'hip.acc.x' is in 'm/s\^2', model .* expects 'g'"):
        check_channels(bundle, list(bundle.channels), units, "source X")
    assert check_channels(bundle, list(reversed(bundle.channels)), ["dps"] * 3 + ["g"] * 3, "s") == [5, 4, 3, 2, 1, 0]


def test_mixed_precision_per_layer():
    cfg = tiny_config(layer_weight_quant=("int8", "ternary-eq"))
    model = HARNet(cfg)
    first, second = (b.conv for b in model.branches[0].blocks)
    assert first.quantizer.bits == 8 and second.quantizer.bits == 2
    assert max(len(torch.unique(c)) for c in first.quantizer(first.weight).detach()) > 3
    assert max(len(torch.unique(c)) for c in second.quantizer(second.weight).detach()) <= 3
    assert [l["bits"] for l in layer_shapes(cfg, 1.0)] == [8, 2, 8]
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="one spec per block"):
        tiny_config(layer_weight_quant=("int8",))


def test_inconsistent_architecture_options_are_a_usage_error(data_dir, tmp_path):
    from conftest import run_cli
    result = run_cli("train", "--dataset", "usc-had", "--channels", "8,8", "--max-steps", "1",
                     "--out", str(tmp_path / "x.safetensors"), env={"STREAMHAR_DATA": str(data_dir)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "channels, kernels and pools need one entry per block" in result.stderr
