"""`edgecnn label`: a local web page that turns captures into a `folder:` dataset.

store.py   pending captures, answers as file moves, the write-ahead journal, undo
server.py  the HTTP side (127.0.0.1 only)
page.py    the page itself (grid, guesses, a key per class)
"""

from edgecnn.label.store import LabelStore, class_dir, infer_classes, label_of

__all__ = ["LabelStore", "class_dir", "infer_classes", "label_of", "resolve_classes"]


def resolve_classes(root: str, model: str | None = None, classes: str | None = None) -> list[str]:
    """The classes to offer: --classes, else the labels of --model, else the captures' own."""
    from pathlib import Path

    from edgecnn.errors import BadInput

    if not Path(root).is_dir():
        raise BadInput(f"capture folder {root} does not exist")
    if classes:
        names = [c.strip() for c in classes.split(",") if c.strip()]
        if not names:
            raise BadInput("--classes is empty")
        return names
    if model:
        from edgecnn.manifest import load_manifest

        return list(load_manifest(model).labels)
    found = infer_classes(root)
    if not found:
        raise BadInput(
            f"cannot tell the classes from the captures in {root}; "
            "give --model BUILD_DIR or --classes A,B,..."
        )
    return found
