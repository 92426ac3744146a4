"""Resumable checkpoints: fvcore's Checkpointer with atomic writes, weights-only loading and a
fallback past unreadable files.

fvcore writes a checkpoint straight to its final path and tags ``last_checkpoint`` the same way,
so a run killed mid-write can leave a truncated file tagged as the latest. Here both go through
:mod:`pt3d_radnerf.atomic` (temporary beside the target, renamed into place), stale temporaries
of a killed writer are removed when the checkpointer is created, and files are read back with
``torch.load(weights_only=True)``: only tensors and plain Python containers are stored.

:meth:`AtomicCheckpointer.resume` loads the newest *readable* checkpoint: the tagged one, else
(truncated, deleted, empty or dangling tag) the newest other ``model_*.pth``, with a warning.

Each training stage has its own files in the same folder: the head ``model_<step>.pth`` tagged
by ``last_checkpoint``, the torso stage ``torso_<step>.pth`` tagged by ``last_torso_checkpoint``
(``prefix``); every file records its ``stage``.
"""

import os
import re
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from fvcore.common.checkpoint import Checkpointer

from ..atomic import atomic_path, remove_stale_temporaries, write_text

STAGE_PREFIXES = {"head": "model", "torso": "torso"}


def tag_name(prefix: str) -> str:
    """The tag file naming the newest checkpoint of files ``<prefix>_<step>.pth``."""
    return "last_checkpoint" if prefix == "model" else f"last_{prefix}_checkpoint"


def checkpoint_files(save_dir: str, prefix: str = "model") -> List[str]:
    """Paths of the ``<prefix>_<step>.pth`` files of ``save_dir``, newest step first."""
    if not os.path.isdir(save_dir):
        return []
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)\.pth$")
    found = [(int(m.group(1)), f) for f in os.listdir(save_dir) if (m := pattern.match(f))]
    return [os.path.join(save_dir, f) for _, f in sorted(found, reverse=True)]


def _tagged(save_dir: str, prefix: str) -> Optional[str]:
    """The file the stage's tag names, or None (with a warning) if the tag is missing, empty,
    unreadable or dangling."""
    tag = os.path.join(save_dir, tag_name(prefix))
    if not os.path.exists(tag):
        return None
    try:
        with open(tag) as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        warnings.warn(f"{tag} is unreadable ({err}); looking for the newest checkpoint file instead")
        return None
    path = os.path.join(save_dir, name)
    if not name or os.path.basename(name) != name or not os.path.isfile(path):
        warnings.warn(f"{tag} names {name!r}, which is not a checkpoint file in {save_dir}; "
                      f"looking for the newest checkpoint file instead")
        return None
    return path


def checkpoint_candidates(save_dir: str, prefix: str = "model") -> List[str]:
    """A stage's checkpoint files, the newest first: the tagged one, then the other
    ``<prefix>_<step>.pth`` by step."""
    tagged = _tagged(save_dir, prefix)
    return ([tagged] if tagged else []) + [f for f in checkpoint_files(save_dir, prefix) if f != tagged]


def first_readable(paths: List[str]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """(path, data) of the first readable checkpoint of ``paths`` (unreadable ones are skipped
    with a warning), or None."""
    for path in paths:
        try:
            return path, read_checkpoint(path)
        except CheckpointReadError as err:
            warnings.warn(f"{err}; trying an older checkpoint")
    return None


class CheckpointReadError(ValueError):
    """A file that cannot be read as a complete pt3d_radnerf checkpoint (truncated, corrupt, not
    a checkpoint). Loading stops before anything is modified."""


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The dict stored in checkpoint ``path`` (weights-only load on the CPU).

    Raises:
        FileNotFoundError: no such file.
        CheckpointReadError: unreadable (message names the file, never suggests unsafe loading).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=torch.device("cpu"), weights_only=True)
    except Exception as err:
        # torch's message for a non-tensor pickle recommends weights_only=False, i.e. running
        # arbitrary code from the file: never pass that on.
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = ("it holds objects other than tensors and plain containers" if "weights_only" in str(err)
                  else f"{type(err).__name__}: {text}")
        raise CheckpointReadError(
            f"cannot read checkpoint {path}: not a complete pt3d_radnerf checkpoint ({reason})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointReadError(f"cannot read checkpoint {path}: not a pt3d_radnerf checkpoint (no model state)")
    return data


class AtomicCheckpointer(Checkpointer):
    """fvcore ``Checkpointer`` whose saves are atomic and whose loads are weights-only and strict.

    Args:
        model, save_dir, **checkpointables: as fvcore's Checkpointer (each checkpointable has
            ``state_dict`` / ``load_state_dict``).
        keep: number of most recent ``model_*.pth`` files kept (older ones are deleted after a
            successful save); keep >= 2 leaves a fallback if the newest is damaged later.
        check: optional ``check(path, data)`` run on every file read, before anything is loaded
            from it (raise to refuse the checkpoint; such refusals are not skipped by resume).
        prefix: file names ``<prefix>_<step>.pth``, tagged by :func:`tag_name` (one per stage).
        read_only: loads only: never writes, prunes or removes anything in ``save_dir`` (the
            processes other than rank 0 of a distributed run).
    """

    def __init__(self, model, save_dir: str, keep: int = 2,
                 check: Optional[Callable[[str, Dict[str, Any]], None]] = None, prefix: str = "model",
                 read_only: bool = False, **checkpointables: Any) -> None:
        super().__init__(model, save_dir, **checkpointables)
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = int(keep)
        self.check = check
        self.prefix = prefix
        self.read_only = bool(read_only)
        if not self.read_only:
            remove_stale_temporaries(save_dir)

    def save(self, name: str, **kwargs: Any) -> None:
        if self.read_only:
            raise RuntimeError(f"this checkpointer of {self.save_dir} is read-only (only rank 0 writes)")
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        with atomic_path(os.path.join(self.save_dir, basename)) as tmp:
            torch.save(data, tmp)
        self.tag_last_checkpoint(basename)
        self._prune(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        write_text(os.path.join(self.save_dir, tag_name(self.prefix)), last_filename_basename)

    def model_files(self) -> List[str]:
        """Paths of this stage's ``<prefix>_<step>.pth`` files, newest step first."""
        return checkpoint_files(self.save_dir, self.prefix)

    def candidates(self) -> List[str]:
        """The files :meth:`resume` tries (:func:`checkpoint_candidates`)."""
        return checkpoint_candidates(self.save_dir, self.prefix)

    def _prune(self, newest: str) -> None:
        others = [f for f in self.model_files() if os.path.basename(f) != newest]
        for f in others[max(self.keep - 1, 0):]:
            os.remove(f)

    def resume(self) -> Optional[str]:
        """Loads the newest readable checkpoint of ``save_dir`` into the model and every
        checkpointable; returns its path, or None when there is none at all.

        The tagged file comes first, then the other ``model_*.pth`` newest first; an unreadable
        one is skipped with a warning naming it (a run continues from an older checkpoint rather
        than failing or silently restarting). ``check`` refusals are raised, not skipped.

        Raises:
            CheckpointReadError: checkpoint files exist but none is readable.
        """
        failures = []
        for path in self.candidates():
            try:
                self.load(path)
            except CheckpointReadError as err:
                failures.append(str(err))
                warnings.warn(f"{err}; falling back to an older checkpoint")
                continue
            if failures:
                warnings.warn(f"RESUMING FROM AN OLDER CHECKPOINT {path}: the newer ones are unreadable "
                              f"({len(failures)} skipped); the steps after it are redone")
            return path
        if failures:
            raise CheckpointReadError(
                f"no readable checkpoint in {self.save_dir}:\n  " + "\n  ".join(failures)
                + "\nmove the folder away (or pick another --workspace) to start over")
        return None

    def _load_file(self, f: str) -> Dict[str, Any]:
        data = read_checkpoint(f)
        missing = sorted(k for k in self.checkpointables if k not in data)
        if missing:
            raise ValueError(f"checkpoint {f} lacks {missing}: made by another version of pt3d_radnerf?")
        if self.check is not None:
            self.check(f, data)
        return data

    def _load_model(self, checkpoint: Any):
        # Strict: a checkpoint that misses or adds parameters is another model, not a resume.
        self.model.load_state_dict(checkpoint.pop("model"), strict=True)
        return None

    def _log_incompatible_keys(self, incompatible) -> None:
        pass  # strict loading raised already


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
