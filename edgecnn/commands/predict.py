"""`edgecnn predict`: classify image files with the device runtime (no TensorFlow)."""

from __future__ import annotations

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.runtime.formats import BACKENDS
from edgecnn.tables import format_table


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
    from edgecnn.runtime.images import decode_image

    pictures = [(p, decode_image(p)) for p in images]  # fail on a bad file before loading the model
    with Runner(model, backend=backend, threads=threads, artifact=artifact) as runner:
        results = []
        for path, img in pictures:
            # A class scored 0 is not a candidate: an int8 model's softmax floors most of them
            # to exactly 0, and listing those as ranks 2..k reads as if they were answers.
            ranked = runner.classify(img, top_k=top_k)
            preds = [p for i, p in enumerate(ranked) if i == 0 or round(p.score, 6) > 0]
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
        header = f"{runner.name}: {runner.artifact.name} on {runner.backend_name}"
        data = {
            "model": runner.name,
            "artifact": runner.artifact.path,
            "backend": runner.backend_name,
        }
    emit({**data, "results": results}, as_json, header + "\n" + format_table(rows))
