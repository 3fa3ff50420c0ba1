"""`streamhar firmware bench`: exact, repeatable instruction counts, real runs under QEMU (no mocks).

The counting plugin is checked against the RISC-V hardware counter (minstret under -icount) on
the same intervals, both images run twice with identical counts, the float32 baseline computes
the integer network's function (argmax on real windows) and costs more, and the report (text
and JSON) carries every field. Few windows: the whole module runs in well under a minute.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from streamhar.firmware import baseline, bench, plugin, toolchain
from streamhar.firmware.generate import generate, load_model, model_id
from streamhar.firmware.vectors import validation_windows
from streamhar.inference import IntegerEngine

MODEL = "bundled:usc-had"


@pytest.fixture(scope="module")
def usc(data_dir):
    model, source = load_model(MODEL)
    return model, source, validation_windows(MODEL, str(data_dir), 40)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    """The build folder, laid out as the CLI's --out: the CLI test rebuilds nothing."""
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module", params=["stm32f4", "riscv32"])
def bench_run(request, data_dir, out_dir):
    """The bench of one board on 4 windows (float32: 1), and its build folder."""
    work = out_dir / request.param / "usc-had" / "bench"
    return bench.run_bench(request.param, MODEL, str(data_dir), n=4, float_windows=1, build_dir=work), work


def test_counts_repeat_exactly_and_equal_minstret(usc, bench_run):
    model, _, x = usc
    report, work = bench_run
    elf, n_blocks = work / "image" / "firmware.elf", len(model.arch["channels"])
    first, second = (bench.run_image(report.board, elf, x[:3], report.threshold, 0, model_id(model), n_blocks,
                                     work / f"again{i}", 120) for i in range(2))
    whole = first.select(bench.KIND_NET) | first.select(bench.KIND_CASCADE)
    assert whole.sum() == 3 * 3 and first.select(bench.KIND_LAYER).sum() > 100
    # plausible: a whole inference executes at least half an instruction per MAC of the small width
    assert first.insns[whole].min() > report.as_dict()["network"]["small"]["macs"] // 2
    # a second boot counts the very same instructions, interval for interval
    assert np.array_equal(first.insns, second.insns) and np.array_equal(first.labels, second.labels)
    assert first.overhead == second.overhead and 0 < first.overhead < 64
    if report.board == "riscv32":
        # every interval, whole inferences and single kernel calls alike: the plugin's count is minstret's
        assert np.array_equal(first.insns, first.minstret)
    else:
        assert not first.minstret.any()     # no counter on the M4 (board_insn_count is 0): the plugin is the count


def test_riscv32_counts_do_not_depend_on_the_machine(usc, tmp_path):
    """The float32 image runs on QEMU virt (sifive_e has 16 KB of RAM): the same ternary image
    linked for virt executes exactly the instructions it executes on sifive_e."""
    model, source, x = usc
    gen = generate(model, tmp_path / "model", source)
    elf = {"sifive_e": toolchain.build("riscv32", tmp_path / "sifive_e", [bench.BENCH_APP, gen.source],
                                       includes=[gen.header.parent]),
           "virt": baseline.build_float_image("riscv32", [bench.BENCH_APP, gen.source], [gen.header.parent], [],
                                              tmp_path / "virt")}
    runs = {name: bench.run_image(baseline.RISCV32_VIRT if name == "virt" else "riscv32", e, x[:1], gen.threshold, 0,
                                  gen.model_id, len(model.arch["channels"]), tmp_path / f"run-{name}", 120)
            for name, e in elf.items()}
    assert toolchain.symbol_address(elf["virt"], "_start") == baseline.RISCV32_VIRT.flash_origin
    assert np.array_equal(runs["sifive_e"].labels, runs["virt"].labels)
    assert np.array_equal(runs["sifive_e"].insns, runs["virt"].insns)


def test_plugin_output_must_be_complete():
    marks, total = plugin.parse_marks("insn_count 1\nmark 10\nmark 25\ntotal 40\n", "x")
    assert marks == [10, 25] and total == 40
    with pytest.raises(plugin.PluginError, match="not a complete insn_count output"):
        plugin.parse_marks("insn_count 1\nmark 10\n", "hits.txt")
    with pytest.raises(plugin.PluginError, match="out of memory"):
        plugin.parse_marks("insn_count 1\nerror out of memory: marks after the 3-th were lost\ntotal 9\n", "x")


def test_float_baseline_computes_the_integer_network(usc):
    model, _, x = usc
    engine = IntegerEngine(model)
    for wi in (0, len(model.widths) - 1):
        got = baseline.host_logits(model, x, wi)
        want = engine.run(x, model.widths[wi])
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
        # same units (1/logit_scale): the float network is the integer one without its rounding
        assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_bench_report_counts(bench_run):
    report, _ = bench_run
    net, fnet = report.network, report.float_network
    assert report.windows == 4 and report.float_windows == 1
    # the float32 build of the same network executes more instructions, per layer and in all
    assert fnet["full"]["mean"] > net["full"]["mean"] and fnet["small"]["mean"] > net["small"]["mean"]
    assert all(L["float_instructions"] > L["instructions"] for L in report.layers if L["layer"] != "fc")
    assert net["small"]["mean"] < net["full"]["mean"]
    assert net["small"]["min"] <= net["cascade"]["mean"] <= net["small"]["max"] + net["full"]["max"] + 1000
    assert report.float_agreement == 1.0
    # the layers measured one call at a time add up to the whole inference (its loop overhead aside)
    for lv in report.layers_vs_network.values():
        assert abs(lv["layers"] - lv["network_window0"]) < 0.01 * lv["network_window0"]
    if report.board == "riscv32":
        assert report.counts["minstret_checked"] and report.counts["minstret_mismatches"] == 0
    assert report.sizes["image"]["ram"] <= report.sizes["image"]["ram_limit"]
    # the text form: one line per layer and per target, each target with its verdict
    text = report.summary()
    assert "instr/MAC" in text and "cascade (mean)" in text and "targets:" in text
    assert text.count("PASS") + text.count("FAIL") >= len(report.targets)


def test_bench_cli_json_has_every_field(data_dir, out_dir):
    p = run_cli("firmware", "bench", "--board", "stm32f4", "--bundle", MODEL, "--windows", "3", "--float-windows", "1",
                "--out", str(out_dir), "--json", "--data-dir", str(data_dir), timeout=300)
    assert p.returncode == 0, p.stderr
    (r,) = json.loads(p.stdout)
    for key in ("board", "model", "windows", "float_windows", "threshold", "widths", "layers", "network",
                "float_network", "cascade_saving", "float_ratio", "layers_vs_network", "float_agreement", "counts",
                "sizes", "targets", "seconds", "ok"):
        assert key in r, key
    n_blocks = 4
    assert len(r["layers"]) == 2 * (n_blocks + 1)
    for L in r["layers"]:
        for key in ("layer", "width", "shape", "c_in", "c_out", "k", "t_out", "macs", "nonzero", "instructions",
                    "per_mac", "pool_requant", "float_instructions", "float_per_mac", "float_ratio",
                    "target_per_mac", "ok"):
            assert key in L, key
        assert L["macs"] > 0 and L["instructions"] > 0
    for tag in ("small", "full", "cascade"):
        assert {"macs", "mean", "min", "max", "per_mac"} <= set(r["network"][tag])
    assert {"escalated", "escalation_rate", "threshold"} <= set(r["network"]["cascade"])
    assert {"image", "float_image", "scratch", "float_scratch", "model"} <= set(r["sizes"])
    assert {"flash", "ram"} <= set(r["sizes"]["image"]) and "per_width" in r["sizes"]["model"]
    names = [t["name"] for t in r["targets"]]
    assert any("conv instr/MAC" in n for n in names) and any("float32 / ternary" in n for n in names)
    assert any("cascade" in n for n in names) and all(isinstance(t["ok"], bool) for t in r["targets"])
