"""Resumable checkpoints: fvcore's Checkpointer with atomic writes and weights-only loading.

fvcore writes a checkpoint straight to its final path and tags ``last_checkpoint`` the same way,
so a run killed mid-write can leave a truncated file tagged as the latest. Here both files are
written to a temporary name in the same folder and renamed into place (atomic on POSIX), and
checkpoints are read back with ``torch.load(weights_only=True)``: only tensors and plain Python
containers are stored (no pickled objects).
"""

import os
import tempfile
from typing import Any, Callable, Dict, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer


def _atomic_write(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class AtomicCheckpointer(Checkpointer):
    """fvcore ``Checkpointer`` whose saves are atomic and whose loads are weights-only.

    Args:
        model, save_dir, **checkpointables: as fvcore's Checkpointer.
        keep: number of most recent ``model_*.pth`` files kept (older ones are deleted after a
            successful save).
        check: optional ``check(path, data)`` run on every file read, before anything is
            loaded from it (raise to refuse the checkpoint).
    """

    def __init__(self, model, save_dir: str, keep: int = 2,
                 check: Optional[Callable[[str, Dict[str, Any]], None]] = None,
                 **checkpointables: Any) -> None:
        super().__init__(model, save_dir, **checkpointables)
        self.keep = int(keep)
        self.check = check

    def save(self, name: str, **kwargs: Any) -> None:
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        _atomic_write(os.path.join(self.save_dir, basename), lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)
        self._prune(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        _atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                      lambda f: f.write(last_filename_basename.encode()))

    def _prune(self, newest: str) -> None:
        files: List[str] = sorted(f for f in os.listdir(self.save_dir)
                                  if f.startswith("model_") and f.endswith(".pth"))
        old = [f for f in files if f != newest][: max(len(files) - self.keep, 0)]
        for f in old:
            os.remove(os.path.join(self.save_dir, f))

    def _load_file(self, f: str) -> Dict[str, Any]:
        try:
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except Exception as err:
            raise ValueError(f"cannot read checkpoint {f}: {err}") from err
        if self.check is not None:
            self.check(f, data)
        return data


class RNGState:
    """The global torch RNG (CPU and, when present, the current CUDA device) as a checkpointable:
    every random draw of training goes through it, so restoring it resumes bit-for-bit."""

    def state_dict(self) -> Dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
