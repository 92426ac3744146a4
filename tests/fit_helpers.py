"""Shared pieces of the training tests: a tiny config, its CLI flags, state comparison."""

import dataclasses
import importlib.util
import os

import torch

from pt3d_radnerf.training import FitConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "examples", "fit_talking_head.py")


def tiny_config(**overrides) -> FitConfig:
    """A config that trains a 32 x 32 head in a fraction of a second per step."""
    base = dict(iters=8, cameras_per_step=2, rays_per_camera=64, checkpoint_every=3, validate_every=0,
                occupancy_warmup=4, occupancy_update_every=2, grid_resolution=16, unseen_cameras=2,
                ambient_ramp_iters=4)
    base.update(overrides)
    return FitConfig(**base)


def cli_flags(config: FitConfig):
    """The CLI arguments that give ``config``."""
    flags = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        flags += ["--" + f.name.replace("_", "-"), "none" if value is None else repr(value)]
    return flags


def load_cli():
    """examples/fit_talking_head.py as a module (for in-process main(argv) calls)."""
    spec = importlib.util.spec_from_file_location("fit_talking_head", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flatten(prefix, obj, out):
    if torch.is_tensor(obj):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}.{i}", v, out)
    elif isinstance(obj, (int, float)):
        out[prefix] = torch.tensor(obj)
    return out


def training_state(source) -> dict:
    """Every model, grid, optimizer and RNG tensor (flattened names) of a trainer or of a
    checkpoint dict."""
    if isinstance(source, dict):
        parts = {k: source[k] for k in ("model", "grid", "optimizer", "rng")}
    else:
        parts = {"model": source.field.state_dict(), "grid": source.grid.state_dict(),
                 "optimizer": source.optimizer.state_dict()}
    out = {}
    for key, value in parts.items():
        _flatten(key, value, out)
    return out


def differing(a: dict, b: dict):
    """Names whose tensors are not bit-identical (or that only one side has)."""
    keys = set(a) | set(b)
    return sorted(k for k in keys if k not in a or k not in b or not torch.equal(a[k], b[k]))
