"""Progress display: a tqdm bar on a terminal, nothing otherwise (callers log a line per epoch)."""

from __future__ import annotations

import sys


class Progress:
    """A step counter that draws a tqdm bar when ``enabled`` and stderr is a terminal."""

    def __init__(self, label: str, total: int, *, enabled: bool = True, done: int = 0) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=label, unit="step", leave=False,
                            dynamic_ncols=True, mininterval=0.5)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def update(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def write(self, line: str) -> None:
        """Print ``line`` above the bar (or to stderr)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
