"""After deploy's switch: check the daemon's /healthz on the device, roll back if it fails.

On the device, `models/previous` points at the version `current` pointed at before the
last switch (deploy keeps it out of pruning). The health check runs on the device itself
(`python3`, standard library only; the daemon usually listens on 127.0.0.1 there, at the
address in its config unless --health-url says otherwise) and
passes once /healthz answers 200 while serving the build `current` names: its manifest's
`model.version`, else one of its artifacts' short sha256, which is what the daemon
reports. A daemon that cannot load the new build keeps serving the old one, so the
check fails and the switch is undone exactly: `current` and `previous` as they were,
the failed version removed. `deploy --rollback` swaps `current` and `previous` by hand.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from edgecnn.errors import BadInput, EdgeCNNError

UNIT = "edgecnn.service"
NO_PREVIOUS = 13

HEALTH_PY = r"""
import json, sys, time, urllib.error, urllib.request
url, manifest, timeout, conf = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
if not url:  # the daemon's own address, from its config ([http] host and port)
    host, port = "127.0.0.1", 8080
    try:
        import tomllib
        with open(conf, "rb") as f:
            c = tomllib.load(f)
        h = c.get("http") or {}
        port = int(h.get("port", c.get("port", 8080)))
        host = str(h.get("host", c.get("host", host)))
    except Exception:
        pass
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "localhost": "127.0.0.1"}.get(host, host)
    url = "http://%s:%d/healthz" % ("[%s]" % host if ":" in host else host, port)
try:
    with open(manifest) as f:
        m = json.load(f)
except Exception as e:
    print("health=cannot read %s: %s" % (manifest, e)); sys.exit(1)
v = (m.get("model") or {}).get("version")
want = {str(v)} if v else {str(a.get("sha256", ""))[:12] for a in m.get("artifacts") or []}
deadline, last = time.time() + timeout, "no answer"
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    except Exception as e:
        code, body = None, str(e).encode()
    try:
        info = json.loads(body)
    except Exception:
        info = {}
    info = info if isinstance(info, dict) else {}
    served = (info.get("model") or {}).get("version")
    if code == 200 and served in want:
        print("health=ok"); print("served=%s" % served); sys.exit(0)
    if code is None:
        last = "no answer from %s (%s)" % (url, body.decode("utf-8", "replace")[:120])
    elif served not in want:
        err = info.get("last_reload_error")
        last = "HTTP %s, still serving %s, not the new build%s" % (code, served, ": " + err if err else "")
    else:
        last = "HTTP %s (%s)" % (code, "; ".join(info.get("problems") or []) or info.get("status"))
    if time.time() >= deadline:
        break
    time.sleep(0.5)
print("health=" + " ".join(last.split())); sys.exit(1)
"""


def health_url(opts: Any, service: str) -> str | None:
    """The URL to check: the one given; or, when deploy (re)loaded the service, "" (the
    device works out the daemon's address from its config); or None (no check)."""
    url = (opts.health_url or "auto").strip()
    if url.lower() == "none":
        return None
    if url.lower() == "auto":
        return "" if "reloaded" in service else None
    if not url.startswith(("http://", "https://")):
        raise BadInput(f"--health-url must be an http:// URL, 'auto' or 'none', got {url!r}")
    return url


def check_health(remote: Any, opts: Any, url: str) -> tuple[bool, str]:
    """(passed, detail), from the device."""
    manifest = f"{opts.root.rstrip('/')}/models/current/manifest.json"
    conf = f"{opts.config_dir.rstrip('/')}/edgecnn.toml"
    argv = ["python3", "-c", HEALTH_PY, url, manifest, str(opts.health_timeout), conf]
    proc = remote.run(argv, timeout=opts.health_timeout + 30, check=False)
    if proc.returncode == 127:
        return False, "python3 not found on the device (needed by the health check)"
    out = dict(
        ln.split("=", 1) for ln in proc.stdout.decode("utf-8", "replace").splitlines() if "=" in ln
    )
    return proc.returncode == 0, out.get("health", "health check gave no answer")


def reload_lines(opts: Any) -> list[str]:
    """Reload a running unit; otherwise the daemon's file watcher sees the new link."""
    ctl = shlex.quote(opts.systemctl)
    return [
        'S=""; [ "$(id -u)" = 0 ] || S="sudo -n"',
        f"if command -v {ctl} >/dev/null 2>&1 && {ctl} is-active --quiet {UNIT} 2>/dev/null; "
        f"then $S {ctl} reload {UNIT} >&2 && echo service=reloaded; else echo service=watcher; fi",
    ]


def _link(name: str, target: str) -> str:
    """Point `name` at `target` atomically (or remove it when target is empty)."""
    q = shlex.quote
    if not target:
        return f"rm -f {name}"
    return f"ln -sfn {q(target)} {name}.new && mv -Tf {name}.new {name} || exit 11"


def restore_script(opts: Any, before_current: str, before_previous: str, failed: str) -> str:
    """Undo a switch exactly; remove the failed version unless it was already on the device."""
    q = shlex.quote
    lines = [
        "set -u",
        f"cd {q(opts.root.rstrip('/') + '/models')} || exit 11",
        _link("current", before_current),
        _link("previous", before_previous),
    ]
    if failed not in (before_current, before_previous):
        lines.append(f"rm -rf -- {q(failed)}")
    return "\n".join([*lines, 'echo "current=$(readlink current)"', *reload_lines(opts)]) + "\n"


def rollback_script(opts: Any) -> str:
    """Swap `current` and `previous` (deploy --rollback)."""
    q = shlex.quote
    models = opts.root.rstrip("/") + "/models"
    return "\n".join([
        "set -u",
        f"cd {q(models)} 2>/dev/null || "
        f"{{ echo {q('no previous version to roll back to: nothing deployed in ' + models)} >&2; "
        f"exit {NO_PREVIOUS}; }}",
        'P=$(readlink previous 2>/dev/null || true); C=$(readlink current 2>/dev/null || true)',
        f'[ -n "$P" ] && [ -d "$P" ] || {{ echo "no previous version to roll back to" >&2; exit {NO_PREVIOUS}; }}',
        'ln -sfn "$P" current.new && mv -Tf current.new current || exit 11',
        'if [ -n "$C" ]; then ln -sfn "$C" previous.new && mv -Tf previous.new previous || exit 11; fi',
        'echo "current=$(readlink current)"; echo "before_current=$C"',
        *reload_lines(opts),
    ]) + "\n"  # fmt: skip


def parse_out(text: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)


def after_switch(remote: Any, opts: Any, res: Any, out: dict[str, str]) -> None:
    """The health check after a switch; on failure, undo the switch (`res` says what happened)."""
    url = health_url(opts, res.service)
    if url is None:
        return
    ok, detail = check_health(remote, opts, url)
    res.health = "ok" if ok else detail
    if ok:
        return
    before = out.get("before_current", "")
    if not before:
        raise BadInput(f"health check failed ({detail}); no previous version to roll back to")
    script = restore_script(opts, before, out.get("before_previous", ""), f"versions/{res.version}")
    proc = remote.run(["sh", "-c", script], timeout=opts.timeout, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BadInput(
            f"health check failed ({detail}) and the rollback failed: {err[-1] if err else 'no message'}"
        )
    res.status = "rolled-back"
    res.previous = before.removeprefix("versions/")
    res.error = f"health check failed ({detail}); rolled back to {res.previous}"


def rollback_host(res: Any, opts: Any) -> Any:
    """`deploy --rollback` on one device (`res`: its fresh result row): swap, reload, check."""
    from edgecnn.remote import Remote

    t0 = time.monotonic()
    try:
        remote = Remote(res.host, known_hosts=opts.known_hosts, identity=opts.identity,
                        connect_timeout=opts.connect_timeout)  # fmt: skip
        res.host = str(remote.target)
        proc = remote.run(["sh", "-c", rollback_script(opts)], timeout=opts.timeout, check=False)
        out = parse_out(proc.stdout.decode("utf-8", "replace"))
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise BadInput(err[-1] if err else f"rollback failed (exit {proc.returncode})")
        res.version = out.get("current", "").removeprefix("versions/")
        res.previous = out.get("before_current", "").removeprefix("versions/")
        res.service = out.get("service", "-")
        res.steps.append("rolled back")
        url = health_url(opts, res.service)
        if url is not None:
            ok, detail = check_health(remote, opts, url)
            res.health = "ok" if ok else detail
            if not ok:
                raise BadInput(f"rolled back, but the health check failed: {detail}")
        res.status = "ok"
    except EdgeCNNError as e:
        res.error = str(e)
    except Exception as e:  # one host's surprise must not stop the fleet
        res.error = f"{type(e).__name__}: {e}"
    res.seconds = round(time.monotonic() - t0, 2)
    return res
