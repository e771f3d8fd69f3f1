"""matplotlib, imported lazily with the non-interactive Agg backend, and the one writer of
picture files (atomic, never over an existing file without --force)."""

from __future__ import annotations

from pathlib import Path

from engines.errors import UsageError

FORMATS = (".png", ".svg")
INSTALL = "pip install 'audio-speaker[plot]'"
DPI = 100  # PNG pixels per inch: a 10 x 4.5 inch figure is 1000 x 450 pixels


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed); a UsageError (exit 2)
    naming the install line when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError(f"--plot needs matplotlib, which is not installed: {INSTALL}"
                         ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str | Path, force: bool) -> Path:
    """Refuse, before any work, a --plot name other than .png/.svg, a missing folder, an
    existing file without `force`, and a missing matplotlib."""
    out = Path(path)
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot {path}: unknown format (use a name ending in "
                         f"{' or '.join(FORMATS)})")
    if not out.parent.is_dir():
        raise UsageError(f"--plot {path}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise UsageError(f"--plot: {out} is a directory")
    if out.exists() and not force:
        raise UsageError(f"--plot: {out} exists; not overwriting it (pass --force)")
    pyplot()
    return out


def save(figure, path: Path, force: bool = False) -> None:
    """Write `figure` to `path` (format from its suffix) through a scratch file, then close
    it. Raises UsageError if the file appeared meanwhile and `force` is not set."""
    from engines.files import TargetExists, disk_errors, new_file

    plt = pyplot()
    try:
        with disk_errors(path):
            with new_file(path, force) as draft:
                figure.savefig(draft.path, format=path.suffix.lower()[1:], dpi=DPI,
                               bbox_inches="tight", metadata=_metadata(path))
    except TargetExists:
        raise UsageError(f"--plot: {path} appeared during the run; not overwriting it "
                         "(pass --force)") from None
    finally:
        plt.close(figure)


def _metadata(path: Path) -> dict:
    """No creation date in the file, so the same data make the same bytes."""
    return {"Date": None} if path.suffix.lower() == ".svg" else {}


def colours(count: int) -> list:
    """`count` distinct colours, none of them grey (grey means unknown or reference): tab10,
    then tab20 (their greys left out), then a sampled hsv wheel."""
    plt = pyplot()
    for name, greys in (("tab10", {7}), ("tab20", {14, 15})):
        palette = [plt.get_cmap(name)(i) for i in range(len(plt.get_cmap(name).colors))
                   if i not in greys]
        if count <= len(palette):
            return palette[:count]
    return [plt.get_cmap("hsv")(i / count) for i in range(count)]
