"""Demo inputs from a named data set: PNG images and a video, with their true labels.

    python tools/demo_inputs.py --data digits --out demo
    edgecnn predict build/digits demo/image_000_7.png
    edgecnn serve --model build/digits --source demo/video.mp4 --loop

    python tools/demo_inputs.py --data mnist5k --out demo43 --aspect 4:3 --count 300

Takes real test images of the data set (the held-out split `edgecnn train` makes with the
same seed, so a model trained on it has not seen them), writes each as a PNG upscaled to
--size pixels high, and a video (mp4v MP4, OpenCV: `pip install 'edgecnn[video]'`) that shows
each image for --frames frames, centred on a black frame of the --aspect ratio (4:3 is what
most cameras give). `labels.csv` lists every file and the video's frame range per image.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_aspect(text: str) -> float:
    try:
        w, h = (float(v) for v in text.split(":"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise SystemExit(f"error: --aspect must look like 4:3, got {text!r}") from None
    return w / h


def centred_frame(img: np.ndarray, size: int, aspect: float) -> np.ndarray:
    """An RGB frame `size` high and `size * aspect` wide, the image scaled to its height
    (nearest neighbour: no new pixel values) and centred on black."""
    from PIL import Image

    side = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    side = side.convert("RGB").resize((size, size), Image.NEAREST)
    width = max(size, int(round(size * aspect)))
    frame = np.zeros((size, width, 3), np.uint8)
    left = (width - size) // 2
    frame[:, left : left + size] = np.asarray(side)
    return frame


def write_video(path: Path, frames: list[np.ndarray], repeat: int, fps: float) -> Path:
    from edgecnn.optional import require

    cv2 = require("cv2")
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not out.isOpened():
        raise SystemExit("error: OpenCV cannot write an mp4v video here")
    for frame in frames:
        bgr = np.ascontiguousarray(frame[..., ::-1])
        for _ in range(repeat):
            out.write(bgr)
    out.release()
    return path


def make_demo(data: str, out: Path, count: int, size: int, aspect: float, repeat: int,
              fps: float, seed: int = 0) -> list[dict]:  # fmt: skip
    """Write the images, the video and labels.csv; returns the labels rows."""
    from edgecnn.data import load_dataset
    from edgecnn.fsutil import atomic_dir

    ds = load_dataset(data, seed=seed)
    x, y = ds.x_test[:count], ds.y_test[:count]
    rows = []
    with atomic_dir(out) as tmp:
        frames = []
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            from PIL import Image

            name = ds.class_names[int(label)]
            png = f"image_{i:03d}_{''.join(c if c.isalnum() else '_' for c in name)}.png"
            square = centred_frame(img, size, 1.0)
            Image.fromarray(square[..., 0] if img.shape[-1] == 1 else square).save(tmp / png)
            frames.append(centred_frame(img, size, aspect))
            rows.append({"file": png, "label": name, "index": int(label),
                         "first_frame": i * repeat, "last_frame": (i + 1) * repeat - 1})  # fmt: skip
        write_video(tmp / "video.mp4", frames, repeat, fps)
        with open(tmp / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="a dataset name, as `edgecnn train --data`")
    ap.add_argument("--out", default="demo", type=Path)
    ap.add_argument("--count", default=30, type=int, help="test images to write")
    ap.add_argument("--size", default=96, type=int, help="image and frame height in pixels")
    ap.add_argument("--aspect", default="1:1", help="video frame aspect (width:height), e.g. 4:3")
    ap.add_argument("--frames", default=3, type=int, help="video frames per image")
    ap.add_argument("--fps", default=30.0, type=float)
    args = ap.parse_args()
    if args.count < 1 or args.size < 8 or args.frames < 1:
        raise SystemExit("error: --count and --frames must be at least 1, --size at least 8")
    from edgecnn.errors import EdgeCNNError

    try:
        rows = make_demo(args.data, args.out, args.count, args.size, parse_aspect(args.aspect),
                         args.frames, args.fps)  # fmt: skip
    except EdgeCNNError as e:
        raise SystemExit(f"error: {e}") from None
    print(
        f"{len(rows)} images, video.mp4 ({len(rows) * args.frames} frames) and labels.csv in {args.out}"
    )


if __name__ == "__main__":
    main()
