"""Execute a notebook the way `jupyter nbconvert --to notebook --execute` does, for long runs.

    python -m slimlab.execute notebooks/04_parameter_sharing.ipynb --output-dir build/full [--log logs/cells.log]

Two differences from nbconvert, both for the full profile's hours-long runs:

* No unbounded waits. nbconvert with `--ExecutePreprocessor.timeout=-1` waits on the kernel's shell and IOPub
  channels without a time limit. On the 2026-12-03 build machine (ipykernel 6.31, jupyter_client 8.10,
  pyzmq 27) such a wait missed a reply that had already arrived: notebook 04's full run stopped at the rank
  slider's cell with the kernel idle, twice, and a wait with a time limit returned the reply as soon as the
  limit expired. Here every wait polls with a short limit (`poll_s`) and tries again, so a missed wake-up
  costs at most `poll_s` seconds; a cell itself may still run for hours.
* A line per cell on stderr (and in `log`): UTC time, "start"/"done", the cell's index and its first words,
  so that a long run shows where it is.

The executed notebook is written under a temporary name and renamed, so a run that fails mid-way leaves no
half-written file; the error (nbclient's `CellExecutionError`, with the cell and its traceback) is raised.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from queue import Empty

from .files import atomic_path

__all__ = ["execute_notebook"]


def _client_class():
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete
    from nbclient.util import ensure_async

    class PatientClient(NotebookClient):
        """nbclient's client whose waits never block without a time limit (see the module's docstring)."""

        async def _async_handle_timeout(self, timeout, cell=None):
            return None            # the poll limit expired with no reply yet: keep waiting (not a cell timeout)

        async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
            while True:
                try:
                    msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=self.poll_s))
                except Empty:
                    continue
                if msg["parent_header"].get("msg_id") == parent_msg_id:
                    try:
                        self.process_message(msg, cell, cell_index)
                    except CellExecutionComplete:
                        return

    return PatientClient


def execute_notebook(src: str | os.PathLike, out: str | os.PathLike, *, cwd: str | os.PathLike | None = None,
                     log: str | os.PathLike | None = None, poll_s: float = 2.0, kernel_name: str = "python3") -> Path:
    """Run every cell of notebook `src` in a fresh kernel (working directory `cwd`, default the notebook's
    folder) and write the executed notebook to `out` (temporary name, then rename). Returns `out`."""
    import nbformat

    src, out = Path(src), Path(out)
    if src.suffix != ".ipynb":
        raise ValueError(f"src must be a .ipynb notebook, got {str(src)!r}")
    if not src.is_file():
        raise ValueError(f"no notebook at {str(src)!r}")
    if out.suffix != ".ipynb":
        raise ValueError(f"out must end in .ipynb, got {str(out)!r}")
    if isinstance(poll_s, bool) or not isinstance(poll_s, (int, float)) or not 0 < poll_s <= 60:
        raise ValueError(f"poll_s must be a number of seconds in (0, 60], got {poll_s!r}")
    cwd = Path(cwd) if cwd is not None else src.resolve().parent
    if not cwd.is_dir():
        raise ValueError(f"cwd must be an existing folder, got {str(cwd)!r}")

    nb = nbformat.read(src, as_version=4)
    logf = open(log, "a", encoding="utf-8") if log is not None else None

    def say(what: str, cell, index: int) -> None:
        words = " ".join(cell.source.split())[:60]
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC {what} cell {index}: {words}"
        print(line, file=sys.stderr, flush=True)
        if logf is not None:
            print(line, file=logf, flush=True)

    try:
        client = _client_class()(
            nb, timeout=poll_s, iopub_timeout=30, kernel_name=kernel_name, resources={"metadata": {"path": str(cwd)}},
            on_cell_start=lambda cell, cell_index: say("start", cell, cell_index),
            on_cell_executed=lambda cell, cell_index, execute_reply: say("done", cell, cell_index))
        client.poll_s = float(poll_s)
        client.execute()
    finally:
        if logf is not None:
            logf.close()
    with atomic_path(out) as tmp:
        nbformat.write(nb, str(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slimlab.execute", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", help="the notebook to run")
    ap.add_argument("--output-dir", default="build/notebooks", help="where the executed notebook goes (same name)")
    ap.add_argument("--log", help="also append the per-cell lines to this file")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds each wait on the kernel lasts before it retries")
    args = ap.parse_args(argv)
    src = Path(args.notebook)
    out = execute_notebook(src, Path(args.output_dir) / src.name, log=args.log, poll_s=args.poll)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
