"""Progress bars: tqdm's, drawn on stderr when it is a terminal, with optreg's usual options.

``disable=None`` is tqdm's own "draw only on a TTY"; ``enabled=False`` turns a bar off outright
(``--no-progress``, or several runs that would overwrite each other's bar). Callers that log a
line per epoch write it with ``bar.write`` while a bar is drawn, and plainly when ``bar.disable``.
"""

from __future__ import annotations

from tqdm import tqdm  # the text bar everywhere (tqdm.auto would need ipywidgets in Jupyter)

__all__ = ["progress_bar"]


def progress_bar(desc: str, total: int | None, *, enabled: bool = True, done: int = 0,
                 unit: str = "it", leave: bool = False, **options: object) -> tqdm:
    """A tqdm bar over ``total`` units starting at ``done``; drawn only on a terminal."""
    return tqdm(total=total, initial=done, desc=desc, unit=unit, leave=leave,
                dynamic_ncols=True, mininterval=0.5, disable=None if enabled else True,
                **options)
