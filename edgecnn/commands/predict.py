"""`edgecnn predict`: classify image files with the device runtime (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgecnn.commands.common import emit, format_table, handle_errors
from edgecnn.errors import BadInput
from edgecnn.runtime.backends import BACKENDS


def load_image(path: str | Path) -> Any:
    """Open an image file with Pillow; anything else is a one-line BadInput."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            return img.copy()
    except FileNotFoundError:
        raise BadInput(f"{p} does not exist") from None
    except IsADirectoryError:
        raise BadInput(f"{p} is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"{p} is not an image ({type(e).__name__})") from None


@click.command("predict")
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", "top_k", default=5, show_default=True, type=click.IntRange(1, None))
@click.option(
    "--artifact",
    default=None,
    help="Pick an artifact of a build dir: file name, precision or format.",
)
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKENDS))
@click.option("--threads", default=None, type=click.IntRange(1, None), help="Interpreter threads.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def command(
    model: str,
    images: tuple[str, ...],
    top_k: int,
    artifact: str | None,
    backend: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Classify IMAGES with a converted model and print the top-k labels and scores.

    MODEL is a build directory (with manifest.json; the int8 TFLite is used unless
    --artifact says otherwise) or one artifact file inside it.

    \b
    Example:
      edgecnn predict build/digits_cnn photo1.png photo2.jpg --top-k 3
    """
    from edgecnn.runtime import Runner

    pictures = [(p, load_image(p)) for p in images]  # fail on a bad file before loading the model
    with Runner(model, backend=backend, threads=threads, artifact=artifact) as runner:
        results = []
        for path, img in pictures:
            preds = runner.classify(img, top_k=top_k)
            results.append(
                {
                    "image": str(path),
                    "predictions": [
                        {"index": p.index, "label": p.label, "score": round(p.score, 6)}
                        for p in preds
                    ],
                }
            )
        rows = [
            {"image": r["image"], "rank": i + 1, "label": p["label"], "score": p["score"]}
            for r in results
            for i, p in enumerate(r["predictions"])
        ]
        header = f"{runner.name}: {Path(runner.artifact['path']).name} on {runner.backend_name}"
        data = {
            "model": runner.name,
            "artifact": runner.artifact["path"],
            "backend": runner.backend_name,
        }
    emit({**data, "results": results}, as_json, header + "\n" + format_table(rows))
