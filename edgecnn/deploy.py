"""Push a build to devices over SSH: verify on the device, switch atomically, refresh the service.

On each device (root `/opt/edgecnn` by default):

    models/versions/<version>/   manifest.json, labels.txt, artifacts, SHA256SUMS
    models/current -> versions/<version>      (flipped with one rename)

Files go to a hidden incoming directory first and are checked with
`sha256sum -c` there; only a verified directory becomes a version, and only
then does `current` move, so a daemon watching `current` never sees a
half-copied model. A version is made readable by the service's group (the
service may run as another user than the deploy user), or by everyone if the
deploy user may not give it that group. Incoming directories that a killed
deploy left behind are removed once no process on the device uses them.
Hosts are deployed in parallel; each gets a result row and one failing host
does not stop the others. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn.deploy_health import after_switch, rollback_host
from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.fsutil import sha256_file
from edgecnn.manifest import LABELS_NAME, MANIFEST_NAME

DEFAULT_ROOT = "/opt/edgecnn"
UNIT_NAME = "edgecnn.service"
SUMS_NAME = "SHA256SUMS"


@dataclass
class DeployOptions:
    root: str = DEFAULT_ROOT
    service: bool = False
    keep: int = 3
    known_hosts: str | None = None
    identity: str | None = None
    unit_dir: str = "/etc/systemd/system"
    config_dir: str = "/etc/edgecnn"
    systemctl: str = "systemctl"
    connect_timeout: float = 10.0
    timeout: float = 300.0
    service_group: str = "edgecnn"  # the group the service runs as (device/edgecnn.service)
    # Push edgecnn itself too (a wheel of this checkout, or `wheel`), pip-installed with
    # `extras` into <root>/venv on the device, made with `python` if it is not there yet.
    install_runtime: bool = False
    wheel: str | None = None
    extras: str = "device"
    python: str = "python3"
    health_url: str = "auto"  # checked on the device after the switch (deploy_health)
    health_timeout: float = 30.0


@dataclass
class Bundle:
    """What goes to every device: files, their sha256, and the version name."""

    build: Path
    files: dict[str, Path]
    sums: dict[str, str]
    version: str
    name: str
    size: int


@dataclass
class HostResult:
    host: str
    status: str = "failed"
    version: str = ""
    files: int = 0
    bytes: int = 0
    service: str = "-"
    runtime: str = "-"
    health: str = "-"
    previous: str = ""  # the version rolled back to
    seconds: float = 0.0
    error: str = ""
    steps: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("steps")
        return d


def read_inventory(path: str | Path) -> list[str]:
    """One USER@ADDR[:PORT] per line; blank lines and # comments ignored."""
    p = Path(path)
    try:
        lines = p.read_text("utf-8").splitlines()
    except OSError as e:
        raise BadInput(f"cannot read inventory {p}: {e.strerror or e}") from None
    hosts = [ln.split("#", 1)[0].strip() for ln in lines]
    return [h for h in hosts if h]


def make_bundle(build_dir: str | Path) -> Bundle:
    """Collect and check the build locally (before touching any device)."""
    from edgecnn.runtime.runner import load_build

    build, manifest = load_build(build_dir)
    if not Path(build_dir).is_dir():
        raise BadInput(f"deploy pushes a whole build: give its directory ({build}), not a file")
    gate = manifest.model_field("gate")
    if gate.get("passed") is False:  # `edgecnn retrain` recorded a failed gate
        why = "; ".join(gate.get("reasons") or []) or "see its retrain.md"
        raise BadInput(f"{build} failed its retrain gate ({why}); refusing to deploy it")
    files: dict[str, Path] = {MANIFEST_NAME: build / MANIFEST_NAME}
    if (build / LABELS_NAME).is_file():
        files[LABELS_NAME] = build / LABELS_NAME
    sums: dict[str, str] = {}
    for art in manifest.artifacts:
        rel = art.path
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise BadInput(f"artifact path {rel!r} in the manifest leaves the build directory")
        data = manifest.verify(build, art)
        files[rel] = art.file(build)
        sums[rel] = hashlib.sha256(data).hexdigest()
    for rel in (MANIFEST_NAME, LABELS_NAME):
        if rel in files:
            sums[rel] = sha256_file(files[rel])
    name = manifest.name or build.name
    created = re.sub(r"[^0-9T]", "", manifest.created)[:15] or time.strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(
        b"".join(f"{k}:{v}\n".encode() for k, v in sorted(sums.items()))
    ).hexdigest()[:10]
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
    return Bundle(
        build=build,
        files=files,
        sums=sums,
        version=f"{safe_name}-{created}-{digest}",
        name=name,
        size=sum(p.stat().st_size for p in files.values()),
    )


def unit_text(root: str = DEFAULT_ROOT, config_dir: str = "/etc/edgecnn") -> str:
    """The packaged systemd unit with the install root and config directory filled in."""
    text = resources.files("edgecnn.daemon").joinpath("data", UNIT_NAME).read_text("utf-8")
    return text.replace("/etc/edgecnn", config_dir.rstrip("/")).replace(
        DEFAULT_ROOT, root.rstrip("/")
    )


def config_text(root: str = DEFAULT_ROOT) -> str:
    text = resources.files("edgecnn.daemon").joinpath("data", "edgecnn.toml").read_text("utf-8")
    return text.replace(DEFAULT_ROOT, root.rstrip("/"))


def _sums_file(bundle: Bundle) -> bytes:
    return "".join(f"{h}  {rel}\n" for rel, h in sorted(bundle.sums.items())).encode()


SERVICE_STAGE = ".edgecnn-service"
INCOMING_PREFIX = ".incoming-"
RUNTIME_STAGE = ".edgecnn-runtime"
# Exit codes of the device-side script, so a failure names its step.
_STEP_CODES = {
    10: "sha256 check on the device",
    11: "switching the current symlink",
    12: "installing the service",
    13: "installing the runtime (pip install of the edgecnn wheel)",
}


def readable_lines(incoming: str, group: str) -> list[str]:
    """Shell lines giving the service's group read access to the verified tree (else everyone).

    Build files may arrive 0600 (older builds, a tight umask) and tar keeps modes.
    """
    q = shlex.quote
    return [
        f"if chgrp -R {q(group)} {q(incoming)} 2>/dev/null; "
        f"then chmod -R u+rwX,g+rX,g-w,o-rwx {q(incoming)}; "
        f"else chmod -R u+rwX,go+rX,go-w {q(incoming)}; fi || exit 11",
        "chmod go+x . versions 2>/dev/null || true",
    ]


def stale_incoming_lines(incoming: str) -> list[str]:
    """Shell lines removing other incoming directories no running process names (killed deploys).

    A transfer in progress shows up in some process's command line (`tar -C DIR`, the
    device script), so only leftovers of a dead deploy are removed.
    """
    own = shlex.quote(Path(incoming).name)
    return [
        f"for d in {INCOMING_PREFIX}*; do",
        f'  [ -d "$d" ] && [ "$d" != {own} ] || continue',
        "  busy=0",
        "  for c in /proc/[0-9]*/cmdline; do",
        '    case "$(tr "\\000" " " < "$c" 2>/dev/null)" in *"/$d"*) busy=1; break ;; esac',
        "  done",
        '  [ "$busy" = 0 ] && rm -rf -- "$d" && echo "removed stale $d" >&2',
        "done",
    ]


def device_script(bundle: Bundle, incoming: str, opts: DeployOptions) -> str:
    """One shell script run on the device after the upload: verify, switch, prune, (re)load.

    One SSH round trip for all of it: a connection costs a second or more on
    a small device, and a fleet pays it per host.
    """
    q = shlex.quote
    models = f"{opts.root.rstrip('/')}/models"
    version_dir = f"versions/{bundle.version}"
    ctl = q(opts.systemctl)
    stage = f"{incoming}/{SERVICE_STAGE}"
    lines = [
        "set -u",
        'S=""; [ "$(id -u)" = 0 ] || S="sudo -n"',
        f"cd {q(incoming)} || exit 10",
        f"sha256sum -c --strict --quiet {SUMS_NAME} >&2 || {{ cd /; rm -rf {q(incoming)}; exit 10; }}",
        *(_runtime_lines(incoming, opts) if opts.install_runtime else []),
        f"cd {q(models)} && mkdir -p versions || exit 11",
        *readable_lines(incoming, opts.service_group),
        *stale_incoming_lines(incoming),
        # What deploy_health needs to undo the switch: current and previous before it.
        "OLD=$(readlink current 2>/dev/null || true); PREV=$(readlink previous 2>/dev/null || true)",
        'echo "before_current=$OLD"; echo "before_previous=$PREV"',
        f"if [ -d {q(stage)} ]; then rm -rf .service-stage && mv {q(stage)} .service-stage || exit 11; fi",
        f"if [ -d {q(version_dir)} ]; then rm -rf {q(incoming)}; "
        f"else mv {q(incoming)} {q(version_dir)} || exit 11; fi",
        f"ln -sfn {q(version_dir)} current.new && mv -Tf current.new current || exit 11",
        f'if [ -n "$OLD" ] && [ "$OLD" != {q(version_dir)} ]; then '
        'ln -sfn "$OLD" previous.new && mv -Tf previous.new previous || exit 11; fi',
        'echo "current=$(readlink current)"',
    ]
    if opts.keep > 0:
        lines.append(  # never the new version, nor the one `previous` keeps for a rollback
            f"(P=$(readlink previous 2>/dev/null | sed 's#^versions/##'); cd versions && ls -1t | "
            f'grep -vxF -e {q(bundle.version)} -e "${{P:-/}}" | tail -n +{opts.keep} | '
            'while read -r d; do rm -rf -- "$d"; done)'
        )
    if opts.service:
        unit = f"{opts.unit_dir.rstrip('/')}/{UNIT_NAME}"
        conf = f"{opts.config_dir.rstrip('/')}/edgecnn.toml"
        lines += [
            "{",
            f"  $S mkdir -p {q(opts.unit_dir)} {q(opts.config_dir)} &&",
            f"  $S install -m 0644 .service-stage/{UNIT_NAME} {q(unit)} &&",
            # Never overwrite a device's own configuration.
            f"  {{ [ -e {q(conf)} ] || $S install -m 0644 .service-stage/edgecnn.toml {q(conf)}; }} &&",
            f"  $S {ctl} daemon-reload && $S {ctl} enable {UNIT_NAME} && "
            f"$S {ctl} reload-or-restart {UNIT_NAME}",
            "} >&2 || { rm -rf .service-stage; exit 12; }",
            "rm -rf .service-stage",
            "echo service=installed+reloaded",
        ]
    else:
        # A running unit reloads now; otherwise the daemon's file watcher sees the new link.
        lines.append(
            f"if command -v {ctl} >/dev/null 2>&1 && {ctl} is-active --quiet {UNIT_NAME} 2>/dev/null; "
            f"then $S {ctl} reload {UNIT_NAME} >&2 && echo service=reloaded; else echo service=watcher; fi"
        )
    return "\n".join(lines) + "\n"


def _runtime_lines(incoming: str, opts: DeployOptions) -> list[str]:
    """Install the pushed wheel into <root>/venv (made if missing), before `current` moves, so
    a daemon restarted on the new model also runs the new runtime."""
    q = shlex.quote
    venv = f"{opts.root.rstrip('/')}/venv"
    wheel = f"{incoming}/{RUNTIME_STAGE}/{Path(opts.wheel or '').name}"
    spec = f"{wheel}[{opts.extras}]" if opts.extras else wheel
    return [
        f"[ -x {q(venv)}/bin/python ] || $S {q(opts.python)} -m venv --system-site-packages "
        f"{q(venv)} >&2 || exit 13",
        f"$S {q(venv)}/bin/python -m pip install -q --disable-pip-version-check {q(spec)} >&2 "
        "|| exit 13",
        f"rm -rf {q(incoming)}/{RUNTIME_STAGE}",
        'echo "runtime=$('
        + f"{q(venv)}/bin/python -m pip show edgecnn"
        + ' | sed -n "s/^Version: //p")"',
    ]


def build_wheel(out_dir: str | Path) -> Path:
    """A wheel of the edgecnn this process runs, built from its source checkout (pip wheel)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise BadInput(
            f"--install-runtime builds a wheel from a source checkout, and {root} is not one; "
            "give --wheel FILE (python -m pip wheel --no-deps . -w dist, in the checkout)"
        )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(root), "-w", str(out_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wheels = sorted(Path(out_dir).glob("edgecnn-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise EdgeCNNError(f"building the edgecnn wheel failed: {tail}")
    return wheels[-1]


def deploy_host(bundle: Bundle, host: str, opts: DeployOptions) -> HostResult:
    """Deploy to one device in two SSH round trips; every failure ends up in the row."""
    from edgecnn.remote import Remote

    res = HostResult(host=host, version=bundle.version)
    t0 = time.monotonic()
    try:
        remote = Remote(
            host,
            known_hosts=opts.known_hosts,
            identity=opts.identity,
            connect_timeout=opts.connect_timeout,
        )
        res.host = str(remote.target)
        models = f"{opts.root.rstrip('/')}/models"
        incoming = f"{models}/{INCOMING_PREFIX}{bundle.version}-{secrets.token_hex(4)}"
        payload: dict[str, Any] = dict(bundle.files)
        payload[SUMS_NAME] = _sums_file(bundle)
        if opts.service:
            payload[f"{SERVICE_STAGE}/{UNIT_NAME}"] = unit_text(opts.root, opts.config_dir).encode()
            payload[f"{SERVICE_STAGE}/edgecnn.toml"] = config_text(opts.root).encode()
        if opts.install_runtime and opts.wheel:
            payload[f"{RUNTIME_STAGE}/{Path(opts.wheel).name}"] = Path(opts.wheel)
        remote.put_files(payload, incoming, timeout=opts.timeout)  # connects; strict host keys
        res.files, res.bytes = len(bundle.files), bundle.size
        res.steps.append("copied")
        script = device_script(bundle, incoming, opts)
        proc = remote.run(["sh", "-c", script], timeout=opts.timeout, check=False)
        text = proc.stdout.decode("utf-8", "replace")
        out = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            step = _STEP_CODES.get(proc.returncode, f"the device script (exit {proc.returncode})")
            raise BadInput(f"{step} failed: {err[-1] if err else 'no message'}")
        if out.get("current") != f"versions/{bundle.version}":
            raise BadInput(f"symlink flip failed on the device: current -> {out.get('current')!r}")
        res.steps.append("switched")
        res.service = out.get("service", "-")
        res.runtime = out.get("runtime", "-") or "-"
        res.status = "ok"
        after_switch(remote, opts, res, out)  # /healthz on the device; rolls back on failure
    except EdgeCNNError as e:
        res.status, res.error = "failed", str(e)
    except Exception as e:  # one host's surprise must not stop the fleet
        res.status, res.error = "failed", f"{type(e).__name__}: {e}"
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def deploy(
    build_dir: str | Path, hosts: list[str], opts: DeployOptions, jobs: int = 8
) -> list[HostResult]:
    """Deploy to every host in parallel; results in the order the hosts were given."""
    if not hosts:
        raise BadInput("no hosts: give --host USER@ADDR[:PORT] (repeatable) or --inventory FILE")
    bundle = make_bundle(build_dir)
    seen: set[str] = set()
    unique = [h for h in hosts if not (h in seen or seen.add(h))]
    with tempfile.TemporaryDirectory(prefix="edgecnn-wheel-") as tmp:
        if opts.install_runtime:
            opts = _with_wheel(opts, tmp)
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique)))) as pool:
            return list(pool.map(lambda h: deploy_host(bundle, h, opts), unique))


def _with_wheel(opts: DeployOptions, tmp: str) -> DeployOptions:
    """The options with the wheel to push: the one given (checked), else one built now."""
    import dataclasses

    if opts.wheel:
        w = Path(opts.wheel)
        if not (w.is_file() and w.name.startswith("edgecnn-") and w.suffix == ".whl"):
            raise BadInput(f"--wheel {w} is not an edgecnn wheel file (edgecnn-*.whl)")
        return opts
    return dataclasses.replace(opts, wheel=str(build_wheel(tmp)))


def rollback(hosts: list[str], opts: DeployOptions, jobs: int = 8) -> list[HostResult]:
    """`deploy --rollback`: on every host, `current` back to `previous` (and reload)."""
    if not hosts:
        raise BadInput("no hosts: give --host USER@ADDR[:PORT] (repeatable) or --inventory FILE")
    unique = list(dict.fromkeys(hosts))
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique)))) as pool:
        return list(pool.map(lambda h: rollback_host(HostResult(host=h), opts), unique))
