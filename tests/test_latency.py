"""Latency you can trust: benchmark_model's measurement semantics, device profiles measured
over SSH or fitted to published figures, estimates that say what they stand on, and the
frame-to-answer path.

The calibration here uses the small corpus (8 networks) through the test sshd on
127.0.0.1, with a device Python that has no onnxruntime: the ONNX part must fail, say so,
and stay out of the profile, while the TFLite part is fitted and then used by
`bench --device pi4`. How good a full calibration is on held-out networks is measured by
tools/latency_heldout.py (figures in README), not here: it needs a quiet machine.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from daemon_fixtures import daemon_build
from sshd import SSHServer, sshd_available

from edgecnn.errors import BadInput

NO_ORT = "raise ImportError(\"No module named 'onnxruntime'\")\n"


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("profiles")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, profiles):
    """`bench --calibrate --device pi4 --host` through a real sshd, on a Python whose
    onnxruntime import fails (as on a device that does not have it)."""
    if not sshd_available():
        pytest.skip("openssh-server is not installed (tools/install-dev.sh installs it)")
    shim = tmp_path_factory.mktemp("no-ort")
    (shim / "onnxruntime").mkdir()
    (shim / "onnxruntime" / "__init__.py").write_text(NO_ORT)
    python = shim / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={shim}:$PYTHONPATH exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    with SSHServer() as srv:
        r = run_cli("bench", "--calibrate", "--device", "pi4", "--corpus", "small", "--host", srv.target,
                    "--known-hosts", str(srv.known_hosts), "-i", str(srv.client_key), "--python", str(python),
                    "--json", env={"EDGECNN_PROFILE_DIR": str(profiles)}, timeout=1800)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    noise = [ln for ln in r.stderr.splitlines() if "oneDNN" in ln or "cuda" in ln.lower()]
    assert not noise, noise  # TensorFlow's start-up noise is silenced here too
    return json.loads(r.stdout)


def test_remote_calibration_writes_a_profile_without_the_part_that_failed(calibrated, profiles):
    from edgecnn.bench.profiles import load_profile

    assert calibrated["profile"] == str(profiles / "pi4.json")
    prof = load_profile(profiles / "pi4.json")
    assert prof.source == "measured" and "over SSH" in prof.basis and prof.arch == "x86_64"
    assert set(prof.models) == {
        "tflite/float32/t1",
        "tflite/float32/t2",
        "tflite/int8/t1",
        "tflite/int8/t2",
    }
    assert all(m.samples == 8 for m in prof.models.values())
    assert set(prof.failed) == {
        "onnx/float32/t1",
        "onnx/float32/t2",
        "onnx/int8/t1",
        "onnx/int8/t2",
    }
    assert all("onnxruntime" in why for why in prof.failed.values())
    raw = json.loads((profiles / "pi4.measurements.json").read_text())
    assert len([r for r in raw if "error" not in r]) == 8 * 4 and all(
        "ops" in r for r in raw if "error" not in r
    )


def test_refit_from_the_kept_measurements_reproduces_the_profile(calibrated, profiles, tmp_path):
    """tools/refit_profile.py fits the measurements beside a profile again, without the
    corpus or the device: the same numbers give the same models, and each corpus artifact
    kept its fastest of the calibration's passes."""
    import subprocess

    from edgecnn.bench.profiles import load_profile

    raw = json.loads((profiles / "pi4.measurements.json").read_text())
    ok = [r for r in raw if "error" not in r]
    assert all(r["p50_ms"] == min(r["rounds_p50_ms"]) for r in ok)
    assert all(passes_were_confirmed(r["rounds_p50_ms"], 3) for r in ok), ok
    out = tmp_path / "refit.json"
    tool = Path(__file__).parent.parent / "tools" / "refit_profile.py"
    p = subprocess.run([sys.executable, str(tool), str(profiles / "pi4.json"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    old, new = load_profile(profiles / "pi4.json"), load_profile(out)
    assert set(new.models) == set(old.models) and "refitted on" in new.basis
    for key, m in old.models.items():
        assert new.models[key].coef == pytest.approx(m.coef) and new.models[key].tile == m.tile
    assert out.with_suffix(".measurements.json").is_file()


def test_estimates_use_the_measured_profile_and_say_so(calibrated, profiles, build):
    r = run_cli(
        "bench", str(build), "--device", "pi4", "--json", env={"EDGECNN_PROFILE_DIR": str(profiles)}
    )
    assert r.returncode == 0, r.stderr
    rows = {x["artifact"]: x for x in json.loads(r.stdout)["results"]}
    int8 = rows["model_int8.tflite"]
    assert int8["status"] == "estimate" and int8["estimate_source"] == "measured"
    assert "pi4 profile measured on" in int8["basis"] and "[tflite/int8/t4]" not in int8["basis"]
    assert "within +-15%" in int8["estimate_error"] and "cross-validated" in int8["estimate_error"]
    onnx = rows["model_int8.onnx"]  # no ONNX fit in this profile: the TFLite one, with a note
    assert "no onnx int8 model" in onnx["basis"] and onnx["estimate_ms"] > 0
    table = run_cli(
        "bench", str(build), "--device", "pi4", env={"EDGECNN_PROFILE_DIR": str(profiles)}
    )
    assert "ESTIMATE for pi4" in table.stdout and "cross-validated" in table.stdout


def test_host_measurement_shows_the_estimate_and_its_error(calibrated, profiles, build, tmp_path):
    """The sshd ran on this machine, so its profile is this host's: copied as host.json it is
    what `bench --device host` puts beside each measurement."""
    host_dir = tmp_path / "p"
    host_dir.mkdir()
    shutil.copy(profiles / "pi4.json", host_dir / "host.json")
    r = run_cli("bench", str(build), "--artifact", "model_int8.tflite", "--runs", "20", "--min-s", "0.2",
                "--no-plot", "--json", env={"EDGECNN_PROFILE_DIR": str(host_dir)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["results"][0]
    assert row["status"] == "ok" and row["estimate_source"] == "measured"
    err = 100.0 * (row["estimate_ms"] - row["p50_ms"]) / row["p50_ms"]
    assert row["estimate_error_pct"] == pytest.approx(err)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not readable JSON"),
        ('{"schema": "something else"}', "not an edgecnn latency profile"),
        (
            '{"schema": "edgecnn.latency-profile/1", "edgecnn": "9.0.0"}',
            "was written by edgecnn 9.0.0",
        ),
        (
            '{"schema": "edgecnn.latency-profile/1", "edgecnn": "0.1.0", "models": 3}',
            "corrupt latency profile",
        ),
    ],
)
def test_bad_profiles_are_one_line_errors(build, tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    r = run_cli("bench", str(build), "--device", "pi4", "--profile", str(p))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (
        r.stderr
    )


def test_a_profile_of_another_architecture_falls_back_with_a_warning(
    calibrated, profiles, tmp_path
):
    from edgecnn.bench.profiles import Profile, load_profile, measured_profile

    data = load_profile(profiles / "pi4.json").to_dict()
    data["arch"] = "aarch64"
    other = tmp_path / "dir"
    other.mkdir()
    Profile.from_dict(data).save(other / "host.json")
    import os

    old = os.environ.get("EDGECNN_PROFILE_DIR")
    os.environ["EDGECNN_PROFILE_DIR"] = str(other)
    try:
        with pytest.warns(RuntimeWarning, match="measured on aarch64, this is x86_64"):
            assert measured_profile("host", "x86_64") is None
    finally:
        os.environ.pop("EDGECNN_PROFILE_DIR") if old is None else os.environ.update(
            EDGECNN_PROFILE_DIR=old
        )
    r = run_cli("bench", str(build), "--profile", str(other / "host.json"), "--estimate")
    assert r.returncode == 2 and "is for aarch64" in r.stderr


def test_published_profiles_cite_their_figures_and_their_error():
    from edgecnn.bench import published

    for device in ("pi4", "pi-zero2", "coral-usb", "coral-devboard", "host", "pi5"):
        prof = published.published_profile(device)
        assert prof.source == "published" and prof.models
        for key in prof.models:
            text = prof.error_text(key)
            assert "leave-one-out" in text or "unknown" in text, (device, key, text)
    pi4 = published.published_profile("pi4")
    assert pi4.models["tflite/float32/t4"].cv  # four XNNPACK figures: one held out at a time
    assert "XNNPACK README" in pi4.basis
    for f in published.FIGURES["pi4"]:
        assert f.source and f.ms > 0


def test_kernel_model_recovers_per_op_costs():
    """Networks whose true latency is a known sum of per-op costs: the fit gets them back."""
    from edgecnn.bench.latency_model import fit
    from edgecnn.runtime.opgraph import Op

    rng = np.random.default_rng(0)
    true = {"conv": (2e-3, 4e-8), "dwconv": (1e-3, 2e-7), "fc": (5e-4, 1e-8)}
    samples = []
    for i in range(60):
        ops = []
        for kind in true:
            for _ in range(int(rng.integers(1, 5))):
                macs = int(rng.integers(10_000, 5_000_000))
                ops.append(Op(kind, kind, macs, 1000, 1000, 0, 1, 16))
        ms = 0.01 + sum(true[o.kind][0] + true[o.kind][1] * o.macs for o in ops)
        samples.append((ops, ms, f"n{i}"))
    model = fit(samples)
    assert model.cv["median_abs"] < 0.01 and model.cv["within_15"] == 1.0
    test_ops = [
        Op("conv", "conv", 3_000_000, 1000, 1000, 0, 1, 16),
        Op("fc", "fc", 100_000, 10, 10, 0, 1, 16),
    ]
    want = 0.01 + 2e-3 + 4e-8 * 3e6 + 5e-4 + 1e-8 * 1e5
    assert model.predict_ops(test_ops) == pytest.approx(want, rel=0.02)


def test_op_variants_get_their_own_costs_when_they_differ():
    """Two element-wise ops of one kind at very different speeds (an int8 ADD is not a
    HARD_SWISH): the fit gives each variant its own cost, and an unseen variant falls back
    to the kind's."""
    from edgecnn.bench.latency_model import fit
    from edgecnn.runtime.opgraph import Op

    per_elem = {"add": 1e-7, "hardswish": 2e-6}
    rng = np.random.default_rng(1)
    samples = []
    for i in range(60):
        ops = [Op("eltwise", v.upper(), int(n), int(n), int(n), 0, 1, 0, v)
               for v in per_elem for n in rng.integers(1_000, 200_000, int(rng.integers(1, 5)))]  # fmt: skip
        ms = 0.01 + sum(per_elem[o.variant] * o.macs for o in ops)
        samples.append((ops, ms, f"n{i}"))
    model = fit(samples)
    assert any(name.startswith("eltwise.hardswish:") for name in model.coef), model.coef
    assert model.cv["median_abs"] < 0.02 and model.cv["within_15"] == 1.0
    add = Op("eltwise", "ADD", 100_000, 100_000, 100_000, 0, 1, 0, "add")
    swish = Op("eltwise", "HARD_SWISH", 100_000, 100_000, 100_000, 0, 1, 0, "hardswish")
    assert model.op_ms(swish) == pytest.approx(20 * model.op_ms(add), rel=0.1)
    unseen = Op("eltwise", "LOGISTIC", 100_000, 100_000, 100_000, 0, 1, 0, "logistic")
    assert 0 < model.op_ms(unseen) < model.op_ms(swish)


def test_benchmark_model_semantics():
    """At least `runs` timed runs and at least `min_s` seconds of them; warm-up likewise."""
    from edgecnn.runtime.timing import TimingPlan, time_calls

    t0 = time.perf_counter()
    s = time_calls(
        lambda: time.sleep(0.001), TimingPlan(warmup=2, warmup_min_s=0.05, runs=5, min_s=0.2)
    )
    assert time.perf_counter() - t0 >= 0.25
    assert s.runs >= 5 and s.runs * s.mean_ms >= 200 * 0.95 and s.warmup_runs >= 2
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    quick = time_calls(lambda: None, TimingPlan(warmup=0, runs=7))
    assert quick.runs == 7 and quick.warmup_runs == 0


def test_frame_path_is_timed_stage_by_stage(build):
    r = run_cli("bench", str(build), "--artifact", "model_int8.tflite", "--frame", "640x480", "--runs", "5",
                "--min-s", "0", "--warmup-min-s", "0", "--no-plot", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    stages = json.loads(r.stdout)["results"][0]["frame_ms"]
    assert list(stages) == [
        "decode",
        "resize",
        "quantize",
        "invoke",
        "dequantize",
        "top_k",
        "total",
    ]
    assert all(v > 0 for v in stages.values())
    assert stages["total"] == pytest.approx(sum(v for k, v in stages.items() if k != "total"))
    table = run_cli("bench", str(build), "--artifact", "int8", "--frame", "320x240", "--runs", "3", "--min-s", "0",
                    "--no-plot")  # fmt: skip
    assert "frame to answer" in table.stdout
    bad = run_cli("bench", str(build), "--frame", "640by480")
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr


def test_onnx_op_profile_names_nodes(build):
    r = run_cli("bench", str(build), "--artifact", "model_float32.onnx", "--op-profile", "--runs", "5",
                "--min-s", "0", "--no-plot", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    prof = json.loads(r.stdout)["results"][0]["op_profile"]
    assert prof and {"node", "op", "ms"} <= set(prof[0]) and any(p["op"] == "Conv" for p in prof)


def test_calibrate_refuses_models_and_bad_corpus(build):
    r = run_cli("bench", str(build), "--calibrate")
    assert r.returncode == 2 and "give no MODELS" in r.stderr
    r = run_cli("bench", "--calibrate", "--corpus", "huge")
    assert r.returncode == 2
    with pytest.raises(BadInput):
        from edgecnn.bench.calibrate import CalibrationOptions, calibrate

        calibrate(CalibrationOptions(corpus="huge"))


def test_calibration_survives_the_runtime_crashing_on_a_model(tmp_path):
    """LiteRT 2.x aborts ("double free") when it runs the int8 export of corpus network 31
    (an inverted-residual block with a 5x5 depthwise and squeeze-excite). The calibration
    records that model as failed, starts a new worker after it, and measures the rest."""
    from edgecnn.bench.calibrate import _local
    from edgecnn.bench.corpus import export_corpus, net_specs

    specs = net_specs("full", 0)
    export_corpus([specs[31], specs[0]], tmp_path, ("tflite",), ("int8",))
    results, _ = _local(tmp_path, [1], 600, 2)
    rows = {r["file"].split("_")[0]: r for r in results if "file" in r}
    assert len(rows) == 2 and set(rows) == {"n031", "n000"}, results
    assert rows["n031"]["kind"] == "crash" and "crashed" in rows["n031"]["error"]
    assert "error" not in rows["n000"] and rows["n000"]["p50_ms"] > 0
    # Two passes (more if they disagree); the model keeps the fastest one's median.
    assert passes_were_confirmed(rows["n000"]["rounds_p50_ms"], 2)
    assert rows["n000"]["p50_ms"] == min(rows["n000"]["rounds_p50_ms"])
    assert [r["event"] for r in results if "event" in r].count("start") == 2  # restarted once


def passes_were_confirmed(times: list[float], rounds: int) -> bool:
    """`rounds` passes, and more only while the two fastest differed by over CONFIRM (at
    most `rounds` more); it stopped once two agreed."""
    from edgecnn.bench.calibrate import CONFIRM

    def agree(ts: list[float]) -> bool:
        return len(ts) > 1 and sorted(ts)[1] <= sorted(ts)[0] * (1 + CONFIRM)

    if not rounds <= len(times) <= 2 * rounds:
        return False
    extra_needed = [not agree(times[:n]) for n in range(rounds, len(times))]
    return all(extra_needed) and (agree(times) or len(times) == 2 * rounds)


def test_passes_go_on_only_for_the_artifacts_whose_fastest_is_unconfirmed():
    """A scripted worker (the real one's line protocol): `a` agrees within 5% in its first
    three passes, `b` only in its fifth, `c` never (it stops at twice the passes), `d`
    crashes the worker in the first pass and is never run again."""
    from edgecnn.bench.calibrate import MARKER, measure_in_rounds

    times = {
        "a": [1.0, 1.03, 1.4],
        "b": [1.0, 1.4, 1.5, 1.3, 1.04],
        "c": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
    runs: list[list[str]] = []

    def run_once(skip: list[list[object]]) -> tuple[str, str, int]:
        done = {f for f, _ in skip}
        runs.append(sorted({"a", "b", "c", "d"} - done))
        lines = [{"event": "start"}]
        for f in runs[-1]:
            lines.append({"event": "begin", "file": f, "threads": 1})
            if f == "d":
                return "".join(MARKER + json.dumps(x) + "\n" for x in lines), "abort", -6
            n = sum(f in r for r in runs) - 1
            lines.append({"file": f, "threads": 1, "p50_ms": times[f][n]})
        lines.append({"event": "end"})
        return "".join(MARKER + json.dumps(x) + "\n" for x in lines), "", 0

    merged = {r["file"]: r for r in measure_in_rounds(run_once, 3) if "file" in r}
    assert merged["a"]["rounds_p50_ms"] == times["a"] and merged["a"]["p50_ms"] == 1.0
    assert merged["b"]["rounds_p50_ms"] == times["b"]
    assert merged["c"]["rounds_p50_ms"] == times["c"]
    assert merged["d"]["kind"] == "crash"
    assert all(passes_were_confirmed(merged[f]["rounds_p50_ms"], 3) for f in "abc")
    # After the crash a new worker went on with the rest of the first pass; d never ran again.
    assert sum("d" in r for r in runs) == 1
    assert [r for r in runs if "d" not in r][3:] == [["b", "c"], ["b", "c"], ["c"]]


def test_the_full_corpus_keeps_the_grammar_and_adds_wide_nets_and_zoo_families():
    """The grammar's 160 nets stay the same (profiles and the crash test above depend on
    them); the wide nets reach 512 channels; no zoo family configuration is held out."""
    import importlib.util

    from edgecnn.bench.corpus import FAMILIES, SIZES, WIDE_NETS, build_net, grammar_specs, net_specs

    full = net_specs("full", 0)
    assert [s.blocks for s in full[: SIZES["full"]]] == [s.blocks for s in grammar_specs(160, 0)]
    assert len(full) == SIZES["full"] + WIDE_NETS + len(FAMILIES)
    assert len({s.name for s in full}) == len(full)
    wide = full[SIZES["full"] : SIZES["full"] + WIDE_NETS]
    assert max(b[-1] if b[0] == "res" else 0 for s in wide for b in s.blocks) >= 384
    spec = importlib.util.spec_from_file_location(
        "latency_heldout", Path(__file__).parent.parent / "tools" / "latency_heldout.py"
    )
    heldout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heldout)
    assert heldout.configurations() and not heldout.in_corpus()
    pruned = next(s for s in full if s.family and s.family[2])
    model = build_net(pruned)  # a zoo network, pruned, as the corpus exports it
    assert (
        model.count_params()
        < build_net(
            type(pruned)(pruned.name, pruned.input, family=(*pruned.family[:2], 0))
        ).count_params()
    )
