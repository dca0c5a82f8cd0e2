"""`edgecnn bench --calibrate`: measure the corpus on the target, fit its device profile.

1. The corpus (edgecnn.bench.corpus) is generated and exported here, on the host.
2. `edgecnn.runtime.corpus_worker` times every artifact at each thread count on the
   target: this machine, or a device over SSH (with the device package copied along).
   The corpus is measured in `rounds` short passes and each artifact keeps its fastest
   pass's median: on a shared or busy machine a burst of other work slows a whole pass of
   one artifact, and time-separated passes see it in one pass, not in all (timeit's rule:
   the slower repeats are interference). The passes together take about one long pass.
   Then up to `rounds` more passes go over only the artifacts whose two fastest passes
   still differ by more than 5%: on a 2-vCPU VM with slow spells of seconds to minutes
   (the same file 1.3-1.45x slower), three passes left 59% of them unconfirmed.
3. One kernel model is fitted per (format, precision, threads) from the corpus models that
   ran (at least 90% of them; a runtime that crashes on a model is restarted after it);
   a key with fewer is left out of the profile, and the report names every failure.
4. The profile (and the raw measurements beside it) is written to the user's profile
   directory or --profile, and later estimates for that device use it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.bench.latency_model import fit
from edgecnn.bench.profiles import Profile, profile_dir, profile_key
from edgecnn.errors import BadInput, CheckFailed
from edgecnn.fsutil import atomic_write_text
from edgecnn.manifest import now_iso
from edgecnn.runtime.corpus_worker import MARKER, MODULE
from edgecnn.runtime.formats import FORMATS
from edgecnn.runtime.opgraph import Op
from edgecnn.versions import tool_versions

Say = Callable[[str], None]
MIN_SHARE = 0.9  # a kernel model is fitted when at least this share of the corpus ran
ROUND_TIMING = {"warmup_min_s": 0.05, "min_s": 0.1}  # per pass (the worker's default: 0.1 / 0.3 s)
# Two passes within this of each other confirm an artifact's fastest; others get more passes.
CONFIRM = 0.05
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CalibrationOptions:
    device: str = "host"
    host: str | None = None
    out: str | None = None  # profile path (default: the user's profile directory)
    corpus: str = "full"
    threads: list[int] | None = None  # default: 1 and all of the target's cores
    formats: tuple[str, ...] = ("tflite", "onnx")
    precisions: tuple[str, ...] = ("float32", "int8")
    known_hosts: str | None = None
    identity: str | None = None
    remote_python: str = "python3"
    timeout: float = 7200.0
    rounds: int = 3  # passes over the corpus; each artifact keeps its fastest
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_worker_lines(stdout: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len(MARKER) :]) for line in stdout.splitlines() if line.startswith(MARKER)
    ]


def _worker_opts(corpus_dir: str, threads: list[int] | str, skip: list[list[Any]]) -> str:
    return json.dumps({"dir": corpus_dir, "threads": threads, "skip": skip, **ROUND_TIMING})


def _local(
    corpus: Path, threads: list[int] | str, timeout: float, rounds: int
) -> tuple[list[dict[str, Any]], str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]),
    }

    def run_once(skip: list[list[Any]]) -> tuple[str, str, int]:
        opts = _worker_opts(str(corpus), threads, skip)
        try:
            p = subprocess.run([sys.executable, "-m", MODULE, opts], capture_output=True, text=True,
                               timeout=timeout, env=env)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BadInput(f"calibration timed out after {timeout:g} s") from None
        return p.stdout, p.stderr, p.returncode

    return measure_in_rounds(run_once, rounds), platform.machine()


def _crash_text(stderr: str, code: int) -> str:
    how = (
        f"signal {signal.Signals(-code).name}"
        if code < 0 and -code in signal.valid_signals()
        else f"exit {code}"
    )
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("INFO:")]
    return f"the runtime crashed on it ({how}{': ' + lines[-1][:160] if lines else ''})"


RunOnce = Callable[[list[list[Any]]], tuple[str, str, int]]


def run_surviving_crashes(run_once: RunOnce, max_restarts: int = 50,
                          skip: list[list[Any]] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run the corpus worker (past the (file, threads) in `skip`); when it dies on a model,
    record that model as failed and start another worker after it. Returns every result
    line (events included)."""
    results: list[dict[str, Any]] = []
    done: list[list[Any]] = list(skip or [])
    for _ in range(max_restarts + 1):
        stdout, stderr, code = run_once(done)
        lines = parse_worker_lines(stdout)
        results += [r for r in lines if r.get("event") != "begin"]
        done += [[r["file"], r["threads"]] for r in lines if "file" in r and "event" not in r]
        if any(r.get("event") in ("end", "error") for r in lines):
            break
        began = [r for r in lines if r.get("event") == "begin"]
        finished = {(f, t) for f, t in done}
        crashed = [r for r in began if (r["file"], r["threads"]) not in finished]
        if not crashed:
            break  # it stopped before starting anything: nothing to skip past
        rec = {k: v for k, v in crashed[-1].items() if k != "event"}
        results.append({**rec, "error": _crash_text(stderr, code), "kind": "crash"})
        done.append([rec["file"], rec["threads"]])
    return results


def measure_in_rounds(run_once: RunOnce, rounds: int) -> list[dict[str, Any]]:
    """`rounds` passes of the worker, then up to as many again over only the artifacts whose
    two fastest passes still disagree by more than CONFIRM; each artifact keeps its fastest
    pass (its passes' medians in `rounds_p50_ms`). A model the runtime crashed on is not
    run again, and one that failed in any pass stays failed."""
    passes: list[list[dict[str, Any]]] = []
    crashed: list[list[Any]] = []
    for n in range(2 * max(1, rounds)):
        skip = crashed
        if n >= rounds:  # a confirmation pass: everything already confirmed is skipped
            todo = unconfirmed(passes)
            if not todo:
                break
            skip = [list(k) for k in result_pairs(passes) - todo]
        res = run_surviving_crashes(run_once, skip=skip)
        crashed += [[r["file"], r["threads"]] for r in res if r.get("kind") == "crash"]
        passes.append(res)
        if any(r.get("event") == "error" for r in res):
            break
    return merge_rounds(passes)


def _timings(passes: list[list[dict[str, Any]]]) -> dict[tuple[str, int], list[float]]:
    out: dict[tuple[str, int], list[float]] = {}
    for res in passes:
        for r in res:
            if "file" in r and "event" not in r and "error" not in r:
                out.setdefault((r["file"], r["threads"]), []).append(r["p50_ms"])
    return out


def result_pairs(passes: list[list[dict[str, Any]]]) -> set[tuple[str, int]]:
    """Every (file, threads) with a result, failures and crashes included."""
    return {
        (r["file"], r["threads"]) for res in passes for r in res if "file" in r and "event" not in r
    }


def unconfirmed(passes: list[list[dict[str, Any]]]) -> set[tuple[str, int]]:
    """Artifacts whose fastest pass no second pass came within CONFIRM of: the fastest may
    itself be disturbed, or the others all were (a slow spell of the machine)."""
    out = set()
    for key, times in _timings(passes).items():
        best, second = sorted(times)[:2] if len(times) > 1 else (times[0], float("inf"))
        if second > best * (1 + CONFIRM):
            out.add(key)
    return out


def merge_rounds(passes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    events = [r for r in passes[0] if "event" in r]
    events += [r for res in passes[1:] for r in res if r.get("event") in ("end", "error")]
    by_artifact: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for res in passes:
        for r in res:
            if "file" in r and "event" not in r:
                by_artifact.setdefault((r["file"], r["threads"]), []).append(r)
    merged = []
    for recs in by_artifact.values():
        bad = [r for r in recs if "error" in r]
        if bad:
            merged.append(bad[0])
            continue
        best = min(recs, key=lambda r: r["p50_ms"])
        merged.append({**best, "rounds_p50_ms": [r["p50_ms"] for r in recs]})
    return events + merged


def _remote(
    o: CalibrationOptions, corpus: Path, threads: list[int] | str
) -> tuple[list[dict[str, Any]], str]:
    from edgecnn.bench.ssh import device_files
    from edgecnn.remote import Remote

    remote = Remote(o.host or "", known_hosts=o.known_hosts, identity=o.identity)
    remote.check()
    files = {f"pkg/{rel}": PACKAGE_ROOT / rel for rel in device_files()}
    files.update({f"corpus/{p.name}": p for p in corpus.iterdir() if p.is_file()})
    tmp = remote.make_temp_dir("edgecnn-calibrate")
    try:
        remote.put_files(files, tmp)
        q = shlex.quote
        arch = remote.run("uname -m", check=False, timeout=60).stdout.decode().strip() or "unknown"

        def run_once(skip: list[list[Any]]) -> tuple[str, str, int]:
            opts = _worker_opts(f"{tmp}/corpus", threads, skip)
            cmd = f"cd {q(tmp)} && PYTHONPATH={q(tmp + '/pkg')} {q(o.remote_python)} -m {MODULE} {q(opts)}"
            proc = remote.run(cmd, check=False, timeout=o.timeout)
            out, err = (
                proc.stdout.decode("utf-8", "replace"),
                proc.stderr.decode("utf-8", "replace"),
            )
            return out, err, proc.returncode

        return measure_in_rounds(run_once, o.rounds), arch
    finally:
        remote.remove_dir(tmp)


def _attach_ops(results: list[dict[str, Any]], corpus_dir: Path) -> None:
    """Each measured result gets its artifact's operators (kept with the raw measurements,
    so a profile can be refitted later without the corpus)."""
    cache: dict[str, list[list[Any]]] = {}
    for r in results:
        if "file" in r and "error" not in r and "ops" not in r:
            if r["file"] not in cache:
                ops = FORMATS[r["format"]].ops((corpus_dir / r["file"]).read_bytes())
                cache[r["file"]] = [list(astuple(op)) for op in ops]
            r["ops"] = cache[r["file"]]


def samples_of(rows: list[dict[str, Any]]) -> list[tuple[list[Op], float, str]]:
    """(operators, measured p50 ms, network) of measurement rows with their ops attached."""
    return [([Op(*o) for o in r["ops"]], float(r["p50_ms"]), r["file"].split("_")[0]) for r in rows]


def fit_profile(
    results: list[dict[str, Any]], corpus_dir: Path | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """(key -> fitted model, key -> why left out) from the worker's results (kept
    measurements carry their operators: no corpus needed to refit them)."""
    if corpus_dir is not None:
        _attach_ops(results, corpus_dir)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "file" in r:
            by_key.setdefault(profile_key(r["format"], r["precision"], r["threads"]), []).append(r)
    models, failed = {}, {}
    for key, rows in sorted(by_key.items()):
        bad = [r for r in rows if "error" in r]
        good = [r for r in rows if "error" not in r]
        if len(good) < MIN_SHARE * len(rows):
            failed[key] = (
                f"{len(bad)} of {len(rows)} corpus models failed, e.g. {bad[0]['file']}: {bad[0]['error']}"
            )
            continue
        models[key] = fit(samples_of(good))
        if bad:  # the fit stands on the rest; the report names what could not run
            failed[f"{key} (models left out)"] = "; ".join(
                f"{r['file']}: {r['error']}" for r in bad
            )
    return models, failed


def _expected(index: dict[str, Any], threads: list[int]) -> set[str]:
    return {
        profile_key(e["format"], e["precision"], t) for e in index["artifacts"] for t in threads
    }


def calibrate(o: CalibrationOptions, say: Say | None = None) -> dict[str, Any]:
    """Measure, fit and save; returns a report (per-key errors, what failed, where saved)."""
    from edgecnn.bench.corpus import export_corpus, net_specs
    from edgecnn.quiet import quiet_tensorflow

    say = say or (lambda m: None)
    if o.corpus not in ("full", "small"):
        raise BadInput(f"unknown corpus {o.corpus!r}; choose full or small")
    quiet_tensorflow()  # net_specs builds Keras models to count their MACs
    with tempfile.TemporaryDirectory(prefix="edgecnn-corpus-") as tmp:
        corpus = Path(tmp)
        say(f"building the {o.corpus} corpus (TFLite and ONNX, float32 and int8)")
        export_corpus(net_specs(o.corpus, o.seed), corpus, o.formats, o.precisions, say)
        index = json.loads((corpus / "corpus.json").read_text())
        threads: list[int] | str = sorted(set(o.threads)) if o.threads else "auto"
        where = o.host or "this machine"
        say(f"measuring {len(index['artifacts'])} artifacts on {where} ({o.rounds} passes)")
        results, arch = (
            _remote(o, corpus, threads) if o.host else _local(corpus, threads, o.timeout, o.rounds)
        )
        events = {r.get("event"): r for r in results if "event" in r}
        if "error" in events or "start" not in events:
            why = events.get("error", {}).get("error", "the corpus worker printed nothing")
            raise CheckFailed(f"calibration on {o.host or 'this machine'} failed: {why}")
        say("fitting the kernel models")
        models, failed = fit_profile(results, corpus)
    seen = {profile_key(r["format"], r["precision"], r["threads"]) for r in results if "file" in r}
    for key in sorted(_expected(index, events["start"]["threads"]) - seen):
        failed[key] = "never measured (the worker stopped before it)"
    return _save(o, models, failed, events, arch, results)


def _save(o: CalibrationOptions, models: dict[str, Any], failed: dict[str, str], events: dict[str, Any],
          arch: str, results: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    if not models:
        raise CheckFailed(
            "no part of the corpus ran completely: "
            + "; ".join(f"{k}: {v}" for k, v in failed.items())
        )
    where = f"over SSH on {o.host}" if o.host else "on this machine"
    system = events["start"].get("system", {})
    prof = Profile(o.device, arch, "measured", f"{o.device} profile measured on {now_iso()[:10]} {where}",
                   now_iso(), models, failed, system, tool_versions())  # fmt: skip
    path = Path(o.out) if o.out else profile_dir() / f"{o.device}.json"
    prof.save(path)
    raw = path.with_suffix(".measurements.json")
    atomic_write_text(raw, json.dumps([r for r in results if "file" in r]))
    return {
        "profile": str(path), "measurements": str(raw), "device": o.device, "arch": arch, "where": where,
        "models": {k: {"tile": m.tile, "samples": m.samples, **m.cv} for k, m in models.items()},
        "failed": failed, "system": system,
    }  # fmt: skip
