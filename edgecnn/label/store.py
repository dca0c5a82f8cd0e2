"""The labelling folder: pending captures, answers as file moves, a write-ahead journal.

    DIR/<host>/<stem>.jpg, .model.jpg, .json      captures as `edgecnn collect` left them
    DIR/labelled/<CLASS>/<host>_<stem>.jpg        answers: a normal `folder:` dataset
    DIR/labelled/.model/<CLASS>/...               the model-size copies (when captured)
    DIR/labelled/.meta/<host>_<stem>.json         the sidecars (hidden from the dataset)
    DIR/discarded/...                             "unknown / discard"
    DIR/.label-journal.jsonl                      every answer and undo, fsync'd first

Each answer is written to the journal (and fsync'd) before its files move, and the
journal is replayed at start (each move is done only if its source is still there), so a
crash at any point loses nothing and leaves no capture half-moved. Class folder names are
the labels percent-encoded where a file name cannot hold them ("T-shirt/top" is
"T-shirt%2Ftop"); `label_of` decodes them. No TensorFlow here.

The journal is written by hand: an append-only file of renames is all it needs, and a
database would be one more thing the labelled folder depends on.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from edgecnn.daemon.capture import FILE_RE, IMAGE, MODEL_IMAGE, SIDECAR
from edgecnn.errors import BadInput

LABELLED = "labelled"
DISCARDED = "discarded"
JOURNAL = ".label-journal.jsonl"
SKIP_DIRS = {LABELLED, DISCARDED}
RESERVED_KEYS = {"x": "discard", "z": "undo"}
KEY_POOL = "1234567890abcdefghijklmnopqrstuvwy"


def class_dir(label: str) -> str:
    """A label as a folder name: reversible, never hidden, never a path."""
    name = quote(label, safe=" -_,+()'&=@!")
    return "%2E" + name[1:] if name.startswith(".") else name


def label_of(folder: str) -> str:
    return unquote(folder)


def class_keys(classes: list[str]) -> dict[str, str]:
    """{class: keyboard key}: a one-character label keeps its own key when it is free."""
    keys: dict[str, str] = {}
    used = set(RESERVED_KEYS)
    for c in classes:
        k = c.lower()
        if len(k) == 1 and k in KEY_POOL and k not in used:
            keys[c], _ = k, used.add(k)
    free = (k for k in KEY_POOL if k not in used)
    for c in classes:
        if c not in keys:
            k = next(free, None)
            if k is None:
                break  # more classes than keys: the rest have buttons only
            keys[c], _ = k, used.add(k)
    return keys


@dataclass
class Capture:
    id: str  # "<host>/<stem>" relative to DIR, or "<stem>"
    files: dict[str, Path]  # kind (".jpg", ".model.jpg", ".json") -> path
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def flat(self) -> str:
        return self.id.replace("/", "_")

    def summary(self) -> dict[str, Any]:
        s = self.sidecar
        return {
            "id": self.id,
            "guess": s.get("label"),
            "score": s.get("score"),
            "reasons": s.get("reasons", []),
            "top_k": (s.get("top_k") or [])[:3],
            "time": s.get("time_iso"),
            "host": self.id.rsplit("/", 1)[0] if "/" in self.id else "",
            "model": (s.get("model") or {}).get("version"),
            "has_model_image": MODEL_IMAGE in self.files,
        }


def _fsync_append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _move(src: Path, dst: Path) -> None:
    """Rename when the source is still there (a replayed move is a no-op)."""
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


class LabelStore:
    """Everything the label page does, as plain methods (the HTTP layer only calls them)."""

    def __init__(self, root: str | os.PathLike, classes: list[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInput(f"capture folder {self.root} does not exist")
        if len(set(classes)) != len(classes) or not classes:
            raise BadInput("classes must be a non-empty list of distinct names")
        self.classes = list(classes)
        self.keys = class_keys(self.classes)
        self.journal = self.root / JOURNAL
        self.lock = threading.Lock()
        self._lockfile = open(self.root / ".label.lock", "a")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another `edgecnn label` is open on {self.root}") from None
        self.ops: list[dict[str, Any]] = []  # label records not undone, oldest first
        self.replay()
        self.pending: dict[str, Capture] = {}
        self.rescan()

    # -- the journal ---------------------------------------------------------------------------
    def replay(self) -> None:
        """Redo every journalled move (and undo) whose source is still in place."""
        if not self.journal.exists():
            return
        stack: list[dict[str, Any]] = []
        for line in self.journal.read_text("utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line: its moves never started
            if rec.get("op") == "label":
                stack.append(rec)
                pairs = rec["moves"]
            elif rec.get("op") == "undo" and stack:
                pairs = [[b, a] for a, b in reversed(stack.pop()["moves"])]
            else:
                continue
            for src, dst in pairs:
                _move(self.root / src, self.root / dst)
        self.ops = stack

    # -- what is pending -----------------------------------------------------------------------
    def rescan(self) -> None:
        found: dict[str, Capture] = {}
        for path in self._capture_files():
            m = FILE_RE.match(path.name)
            rel = path.parent.relative_to(self.root)
            cid = m["stem"] if rel == Path(".") else f"{rel.as_posix()}/{m['stem']}"  # type: ignore[index]
            found.setdefault(cid, Capture(cid, {})).files[m["kind"]] = path  # type: ignore[index]
        complete = {k: c for k, c in found.items() if SIDECAR in c.files and IMAGE in c.files}
        for c in complete.values():
            old = self.pending.get(c.id)
            c.sidecar = old.sidecar if old and old.sidecar else _read_sidecar(c.files[SIDECAR])
        self.pending = dict(
            sorted(complete.items(), key=lambda kv: (kv[1].sidecar.get("time") or 0, kv[0]))
        )

    def _capture_files(self) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            top = Path(dirpath) == self.root
            dirnames[:] = [
                d for d in dirnames if not d.startswith(".") and not (top and d in SKIP_DIRS)
            ]
            out += [Path(dirpath) / f for f in filenames if FILE_RE.match(f)]
        return out

    # -- answers -------------------------------------------------------------------------------
    def moves_for(self, cap: Capture, label: str | None) -> list[list[str]]:
        """[src, dst] relative to the root: the image first, the sidecar last."""
        if label is None:
            base = {k: f"{DISCARDED}/{cap.flat}{k}" for k in cap.files}
        else:
            d = class_dir(label)
            base = {IMAGE: f"{LABELLED}/{d}/{cap.flat}{IMAGE}",
                    MODEL_IMAGE: f"{LABELLED}/.model/{d}/{cap.flat}{IMAGE}",
                    SIDECAR: f"{LABELLED}/.meta/{cap.flat}{SIDECAR}"}  # fmt: skip
        order = [k for k in (IMAGE, MODEL_IMAGE, SIDECAR) if k in cap.files]
        return [[cap.files[k].relative_to(self.root).as_posix(), base[k]] for k in order]

    def answer(self, capture_id: str, label: str | None) -> dict[str, Any]:
        """Label a capture (None: unknown / discard). Journal first, then the moves."""
        with self.lock:
            cap = self.pending.get(capture_id)
            if cap is None:
                raise BadInput(f"no pending capture {capture_id!r} (already answered?)")
            if label is not None and label not in self.classes:
                raise BadInput(f"unknown class {label!r}")
            rec = {"op": "label", "id": cap.id, "label": label, "time": round(time.time(), 3),
                   "moves": self.moves_for(cap, label)}  # fmt: skip
            _fsync_append(self.journal, rec)
            for src, dst in rec["moves"]:
                _move(self.root / src, self.root / dst)
            self.ops.append(rec)
            del self.pending[cap.id]
            return {"id": cap.id, "label": label}

    def undo(self) -> dict[str, Any]:
        """Take back the last answer: its files return where they were."""
        with self.lock:
            if not self.ops:
                raise BadInput("nothing to undo")
            rec = self.ops[-1]
            _fsync_append(
                self.journal, {"op": "undo", "id": rec["id"], "time": round(time.time(), 3)}
            )
            for src, dst in reversed(rec["moves"]):
                _move(self.root / dst, self.root / src)
            self.ops.pop()
            self.rescan()
            return {"id": rec["id"], "label": rec["label"]}

    # -- what the page shows -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.classes}
        for rec in self.ops:
            if rec["label"] is not None:
                out[rec["label"]] = out.get(rec["label"], 0) + 1
        return out

    def state(self, limit: int = 48, rescan: bool = True) -> dict[str, Any]:
        """What the page shows; `rescan` also picks up captures collected meanwhile."""
        with self.lock:
            if rescan:
                self.rescan()
            counts = self.counts()
            items = [c.summary() for c in list(self.pending.values())[:limit]]
            return {
                "classes": [
                    {"name": c, "key": self.keys.get(c), "count": counts.get(c, 0)}
                    for c in self.classes
                ],  # fmt: skip
                "keys": RESERVED_KEYS,
                "pending": len(self.pending),
                "items": items,
                "labelled": sum(counts.values()),
                "discarded": sum(1 for r in self.ops if r["label"] is None),
                "undo": len(self.ops),
                "last": {"id": self.ops[-1]["id"], "label": self.ops[-1]["label"]}
                if self.ops
                else None,
            }

    def image(self, capture_id: str, kind: str = IMAGE) -> bytes:
        """A pending capture's JPEG (only files the index knows: a request never names a path)."""
        with self.lock:
            cap = self.pending.get(capture_id)
            path = cap.files.get(kind) if cap else None
        if path is None or kind not in (IMAGE, MODEL_IMAGE):
            raise BadInput(f"no image for {capture_id!r}")
        return path.read_bytes()

    def close(self) -> None:
        self._lockfile.close()


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def infer_classes(root: str | os.PathLike) -> list[str] | None:
    """The model's labels as the captures record them: the newest sidecar's `labels` list,
    else the (index, label) pairs of their top-k lists when those cover every index from 0.
    Labelled class folders are added. None: cannot tell."""
    newest: tuple[float, list[str]] | None = None
    seen: dict[int, str] = {}
    base = Path(root)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") or d == ".meta"]
        for f in filenames:
            m = FILE_RE.match(f)
            if not (m and m["kind"] == SIDECAR):
                continue
            side = _read_sidecar(Path(dirpath) / f)
            labels, t = side.get("labels"), float(side.get("time") or 0)
            if isinstance(labels, list) and (newest is None or t > newest[0]):
                newest = (t, [str(v) for v in labels])
            for top in side.get("top_k") or []:
                if isinstance(top, dict) and isinstance(top.get("index"), int):
                    seen.setdefault(top["index"], str(top.get("label")))
    if newest is not None:
        labels = newest[1]
    elif seen and sorted(seen) == list(range(max(seen) + 1)):
        labels = [seen[i] for i in range(len(seen))]
    else:
        return None
    labelled = base / LABELLED
    if labelled.is_dir():
        extra = sorted(
            label_of(p.name)
            for p in labelled.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        )
        labels += [c for c in extra if c not in labels]
    return labels
