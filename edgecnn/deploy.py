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
    files: dict[str, Path] = {MANIFEST_NAME: build / MANIFEST_NAME}
    if (build / LABELS_NAME).is_file():
        files[LABELS_NAME] = build / LABELS_NAME
    arts = manifest.get("artifacts") or []
    if not arts:
        raise BadInput(f"{build / MANIFEST_NAME} lists no artifacts")
    sums: dict[str, str] = {}
    for art in arts:
        rel = str(art["path"])
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise BadInput(f"artifact path {rel!r} in the manifest leaves the build directory")
        path = build / rel
        if not path.is_file():
            raise BadInput(f"artifact {rel} listed in the manifest is missing from {build}")
        got = sha256_file(path)
        if art.get("sha256") and got != art["sha256"]:
            raise BadInput(f"{rel} does not match its manifest sha256 in {build}; rebuild it")
        files[rel] = path
        sums[rel] = got
    for rel in (MANIFEST_NAME, LABELS_NAME):
        if rel in files:
            sums[rel] = sha256_file(files[rel])
    name = str(manifest["model"].get("name", build.name))
    created = re.sub(r"[^0-9T]", "", str(manifest.get("created", "")))[:15] or time.strftime(
        "%Y%m%dT%H%M%S"
    )
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


def deploy_host(bundle: Bundle, host: str, opts: DeployOptions) -> HostResult:
    """Deploy to one device; every failure ends up in the row, never as an exception."""
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
        remote.check(timeout=opts.connect_timeout + 20)
        res.steps.append("connected")
        models = f"{opts.root.rstrip('/')}/models"
        q = shlex.quote
        incoming = f"{models}/.incoming-{bundle.version}-{secrets.token_hex(4)}"
        payload: dict[str, Any] = {rel: path for rel, path in bundle.files.items()}
        payload[SUMS_NAME] = _sums_file(bundle)
        remote.put_files(payload, incoming, timeout=opts.timeout)
        res.files, res.bytes = len(bundle.files), bundle.size
        res.steps.append("copied")
        check = remote.run(
            f"cd {q(incoming)} && sha256sum -c --strict --quiet {SUMS_NAME}",
            timeout=opts.timeout,
            check=False,
        )
        if check.returncode != 0:
            remote.remove_dir(incoming)
            detail = (check.stdout + check.stderr).decode("utf-8", "replace").strip().splitlines()
            raise BadInput(
                f"sha256 check failed on the device: {detail[0] if detail else 'sha256sum failed'}"
            )
        res.steps.append("verified")
        version_dir = f"versions/{bundle.version}"
        # A version that is already there (same content hash) is reused; the flip is one rename.
        switch = (
            f"set -e; cd {q(models)}; mkdir -p versions; "
            f"if [ -d {q(version_dir)} ]; then rm -rf {q(incoming)}; else mv {q(incoming)} {q(version_dir)}; fi; "
            f"ln -sfn {q(version_dir)} current.new && mv -Tf current.new current; readlink current"
        )
        out = remote.run(switch, timeout=60).stdout.decode().strip()
        if out != version_dir:
            raise BadInput(f"symlink flip failed on the device: current -> {out!r}")
        res.steps.append("switched")
        if opts.keep > 0:
            prune = (
                f"cd {q(models)}/versions && ls -1t | grep -vxF {q(bundle.version)} | "
                f'tail -n +{opts.keep} | while read -r d; do rm -rf -- "$d"; done'
            )
            remote.run(prune, timeout=60, check=False)
        res.service = _service(remote, opts)
        res.status = "ok"
    except EdgeCNNError as e:
        res.error = str(e)
    except Exception as e:  # one host's surprise must not stop the fleet
        res.error = f"{type(e).__name__}: {e}"
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def _service(remote: Any, opts: DeployOptions) -> str:
    """Install/refresh the unit (--service) and make a running daemon reload the model."""
    q = shlex.quote
    ctl = opts.systemctl
    sudo = 'S=""; [ "$(id -u)" = 0 ] || S="sudo -n"; '
    if opts.service:
        staging = remote.make_temp_dir("edgecnn-unit")
        remote.put_files(
            {
                UNIT_NAME: unit_text(opts.root, opts.config_dir).encode(),
                "edgecnn.toml": config_text(opts.root).encode(),
            },
            staging,
        )
        cmd = (
            f"set -e; {sudo}"
            f"$S mkdir -p {q(opts.unit_dir)} {q(opts.config_dir)}; "
            f"$S install -m 0644 {q(staging + '/' + UNIT_NAME)} {q(opts.unit_dir + '/' + UNIT_NAME)}; "
            # Never overwrite a device's own configuration.
            f"[ -e {q(opts.config_dir + '/edgecnn.toml')} ] || $S install -m 0644 {q(staging + '/edgecnn.toml')} {q(opts.config_dir + '/edgecnn.toml')}; "
            f"$S {ctl} daemon-reload; $S {ctl} enable edgecnn.service; $S {ctl} reload-or-restart edgecnn.service"
        )
        try:
            remote.run(cmd, timeout=120)
        finally:
            remote.remove_dir(staging)
        return "installed+reloaded"
    # Without --service: reload a running unit if there is one; the daemon's
    # file watcher picks up the new `current` link anyway.
    out = remote.run(
        f"{sudo}if command -v {ctl} >/dev/null 2>&1 && {ctl} is-active --quiet edgecnn.service; "
        f"then $S {ctl} reload edgecnn.service && echo reloaded; else echo watcher; fi",
        timeout=60,
        check=False,
    )
    return "reloaded" if b"reloaded" in out.stdout else "watcher"


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
