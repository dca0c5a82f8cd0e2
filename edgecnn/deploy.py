"""Push a build to devices over SSH: verify on the device, switch atomically, refresh the service.

On each device (root `/opt/edgecnn` by default):

    models/versions/<version>/   manifest.json, labels.txt, artifacts, SHA256SUMS
    models/current -> versions/<version>      (flipped with one rename)

Files go to a hidden incoming directory first and are checked with
`sha256sum -c` there; only a verified directory becomes a version, and only
then does `current` move, so a daemon watching `current` never sees a
half-copied model. Hosts are deployed in parallel; each gets a result row and
one failing host does not stop the others. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn.deploy_health import after_switch, rollback_host
from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.fsutil import sha256_file
from edgecnn.manifest import LABELS_NAME, MANIFEST_NAME, load_manifest

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
    build = Path(build_dir)
    if not build.is_dir():
        raise BadInput(f"{build} is not a build directory")
    manifest = load_manifest(build)
    gate = manifest.model_field("gate")
    if gate.get("passed") is False:  # `edgecnn retrain` recorded a failed gate
        why = "; ".join(gate.get("reasons") or []) or "see its retrain.md"
        raise BadInput(f"{build} failed its retrain gate ({why}); refusing to deploy it")
    files: dict[str, Path] = {MANIFEST_NAME: build / MANIFEST_NAME}
    if (build / LABELS_NAME).is_file():
        files[LABELS_NAME] = build / LABELS_NAME
    if not manifest.artifacts:
        raise BadInput(f"{build / MANIFEST_NAME} lists no artifacts")
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
# Exit codes of the device-side script, so a failure names its step.
_STEP_CODES = {
    10: "sha256 check on the device",
    11: "switching the current symlink",
    12: "installing the service",
}


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
        f"cd {q(models)} && mkdir -p versions || exit 11",
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
        incoming = f"{models}/.incoming-{bundle.version}-{secrets.token_hex(4)}"
        payload: dict[str, Any] = dict(bundle.files)
        payload[SUMS_NAME] = _sums_file(bundle)
        if opts.service:
            payload[f"{SERVICE_STAGE}/{UNIT_NAME}"] = unit_text(opts.root, opts.config_dir).encode()
            payload[f"{SERVICE_STAGE}/edgecnn.toml"] = config_text(opts.root).encode()
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
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique)))) as pool:
        return list(pool.map(lambda h: deploy_host(bundle, h, opts), unique))


def rollback(hosts: list[str], opts: DeployOptions, jobs: int = 8) -> list[HostResult]:
    """`deploy --rollback`: on every host, `current` back to `previous` (and reload)."""
    if not hosts:
        raise BadInput("no hosts: give --host USER@ADDR[:PORT] (repeatable) or --inventory FILE")
    unique = list(dict.fromkeys(hosts))
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique)))) as pool:
        return list(pool.map(lambda h: rollback_host(HostResult(host=h), opts), unique))
