"""Data-parallel scale-out on ``torch.distributed`` (torchrun; gloo on CPU, NCCL on GPU).

Not launched by torchrun (no ``WORLD_SIZE`` > 1 in the environment), every function here is the
identity of a single process and nothing changes.

Fitting: every rank holds the same RNG state (same seed, same consumption), draws the step's
frames and marches the rays of the FULL global batch (the march is a small part of a step), then
keeps only its contiguous share of the cameras (:class:`ShardedRaysampler`) before the field
runs. Rays are camera-major, so a camera range is a contiguous range of rays and of packed
samples. Every mean of the loss (MSE, opacity entropy, the ambient term) is over rays or pixels,
and every rank holds the same number of them, so each rank's loss on its share is N x its share
of the global loss; DDP averages the gradients over the N ranks: the result is the gradient of
the global-batch loss, to float rounding. (``losses.ambient_loss`` averages over ALL rays, zero
inside the lower face; a mean over the outside rays only would need their global count, an
all-reduce, instead: ``tests/test_distributed.py`` fails if a loss term breaks this.) The
occupancy-grid update draws its points and frame
from the shared RNG and evaluates parameters that DDP keeps identical on every rank (the
all-reduced gradient is the same on every rank, Adam is deterministic), so every rank computes
the identical update without any communication.

Rendering (:func:`gather_frames`): the frames of a clip are split strided across the ranks and
gathered to rank 0 in order, one frame per rank per round.
"""

import os
import socket
import sys
from dataclasses import replace
from typing import Any, Callable, Iterator, Optional, Tuple

import torch
import torch.distributed as dist

from ..renderer.ray_bundle import PackedRayBundle


def world_size() -> int:
    """Processes in the job (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 when torch.distributed is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the one process that writes files (rank 0)."""
    return rank() == 0


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when not launched by it)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {value!r}") from None
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {size}")
    return size


def init_from_env(device: str) -> str:
    """Joins the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT) and returns the device this rank uses: ``cuda:<LOCAL_RANK>`` for a CUDA
    ``device`` (NCCL), else ``device`` (gloo). Without torchrun (or with one process) it joins
    nothing and returns ``device`` unchanged."""
    if launched_world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: cannot run under torchrun")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available (--device cpu: gloo)")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} CUDA devices: "
                             f"--nproc_per_node must not exceed the GPUs per node")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def free_port() -> int:
    """A free TCP port on 127.0.0.1, the rendezvous of a job spawned on this host (tests, benchmarks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_local(rank: int, world: int, port: int, device: str = "cpu") -> str:
    """Joins, as ``rank``, a job of ``world`` processes spawned on this host without torchrun
    (e.g. torch.multiprocessing.spawn) with its rendezvous at 127.0.0.1:``port``: sets the
    environment torchrun would set and returns :func:`init_from_env`'s device."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    return init_from_env(device)


def shutdown() -> None:
    """Leaves the job (no-op when not in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=comm_device())
    return box[0]


def all_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on every rank (so all ranks stop together)."""
    if world_size() == 1:
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def prepare_everywhere(prepare: Callable[[Optional[str]], Any], root_of: Callable[[Any], str], program: str):
    """Runs a command line's input checks on every process: ``prepare(None)`` on rank 0 first (it
    may generate the dataset), then ``prepare(root)`` on the others with rank 0's dataset folder
    (``root_of(rank 0's result)``). Returns this process's result, or None on every process when
    it failed (OSError, ValueError, TypeError) on any; each failing process prints why, prefixed
    with ``program``."""
    prepared, root = None, None
    if is_main():
        try:
            prepared = prepare(None)
            root = root_of(prepared)
        except (OSError, ValueError, TypeError) as err:
            print(f"{program}: error: {err}", file=sys.stderr)
    root = broadcast_object(root)
    if root is not None and not is_main():
        try:
            prepared = prepare(root)
        except (OSError, ValueError, TypeError) as err:
            print(f"{program}: error (rank {rank()}): {err}", file=sys.stderr)
    return prepared if all_true(prepared is not None) else None


def default_threads(cpu_count: Optional[int] = None) -> int:
    """CPU threads per process: the machine's cores shared by the node's processes."""
    cores = cpu_count or os.cpu_count() or 1
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(cores // max(per_node, 1), 1)


def share(count: int, size: Optional[int] = None, index: Optional[int] = None) -> slice:
    """This rank's contiguous share of ``count`` items (a step's cameras): ``count`` must divide
    by the world size (every rank then holds as many rays, which makes the loss means add up)."""
    size = world_size() if size is None else size
    index = rank() if index is None else index
    if count % size:
        raise ValueError(f"cameras_per_step (--cameras-per-step) {count} must be divisible by the number of processes "
                         f"({size}): every process renders the same number of cameras")
    per = count // size
    return slice(index * per, (index + 1) * per)


def check_divisible(cameras_per_step: int) -> None:
    """Raises the :func:`share` error up front (before any training)."""
    share(cameras_per_step)


def slice_cameras(bundle: PackedRayBundle, cameras: slice) -> PackedRayBundle:
    """The rays and packed samples of cameras ``cameras`` (a range of the leading batch axis) of a
    packed bundle, re-indexed so the share stands alone: ray indices, ``packed_info`` starts and
    ``camera_ids`` start at 0 (camera c of the bundle is camera c - start of the share)."""
    batch = bundle.batch_shape
    if not batch or bundle.origins.dim() < 2:
        raise ValueError("slice_cameras needs a bundle with a leading camera axis (B, ..., 3)")
    lo, hi, _ = cameras.indices(batch[0])
    per_camera = bundle.n_rays // batch[0]
    r0, r1 = lo * per_camera, hi * per_camera
    counts = bundle.packed_info[:, 1]
    s0 = int(counts[:r0].sum())
    s1 = s0 + int(counts[r0:r1].sum())
    info = bundle.packed_info[r0:r1].clone()
    info[:, 0] -= s0
    camera_ids = None if bundle.camera_ids is None else bundle.camera_ids[lo:hi] - lo
    return replace(bundle, origins=bundle.origins[lo:hi], directions=bundle.directions[lo:hi],
                   xys=bundle.xys[lo:hi], ray_indices=bundle.ray_indices[s0:s1] - r0,
                   t_starts=bundle.t_starts[s0:s1], t_ends=bundle.t_ends[s0:s1], packed_info=info,
                   camera_ids=camera_ids)


class ShardedRaysampler(torch.nn.Module):
    """A raysampler for ``ImplicitRenderer`` that runs ``inner`` (a packed
    :class:`~pt3d_radnerf.renderer.OccupancyGridRaysampler`) on all cameras of the call, so every
    rank consumes the same random numbers, and returns this rank's :func:`share` of them
    (:func:`slice_cameras`). The per-camera keywords the field receives (audio, eye,
    frame_index) must be those of the share."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, cameras, **kwargs) -> PackedRayBundle:
        bundle = self.inner(cameras, **kwargs)
        if not isinstance(bundle, PackedRayBundle):
            raise TypeError(f"ShardedRaysampler needs a packed raysampler, got a {type(bundle).__name__}")
        return slice_cameras(bundle, share(bundle.batch_shape[0]))


def comm_device() -> torch.device:
    """Where tensors for collectives live: the current CUDA device under NCCL, else the CPU."""
    if world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_over_ranks(*values) -> Tuple[float, ...]:
    """The means over ranks of scalars ``values`` (numbers or one-element tensors) as floats (one
    all-reduce; each rank's value is a mean over an equal share, so this is the global-batch
    value). A single process gets ``float(v)`` back unchanged."""
    if world_size() == 1:
        return tuple(float(v) for v in values)
    stacked = torch.tensor([float(v) for v in values], dtype=torch.float64, device=comm_device())
    dist.all_reduce(stacked)
    return tuple(float(v) for v in stacked / world_size())


def wrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when in a job of > 1 processes, else ``module``.

    DDP (not a hand-written all-reduce): its gradient buckets all-reduce during backward,
    overlapping the communication of the large dense grid tables with the rest of the backward
    pass. ``device_ids`` stays None: inputs are already on the module's device, and DDP's
    scatter would copy the caller's ``aux_out`` dict (the field appends to it). Buffers are not
    broadcast: the field has none that training changes.
    """
    if world_size() == 1:
        return module
    return torch.nn.parallel.DistributedDataParallel(module, broadcast_buffers=False)


def gradient_bytes(module: torch.nn.Module) -> int:
    """Bytes DDP all-reduces per step: the gradients of every trainable parameter."""
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)


def gather_frames(render: Callable[[int], torch.Tensor], count: int,
                  shape: Tuple[int, ...]) -> Iterator[torch.Tensor]:
    """Frames ``0 .. count-1`` rendered across the processes and yielded IN ORDER on rank 0.

    The split is strided: rank r renders frames r, r + N, r + 2N, ... (``render(i)`` -> a uint8
    tensor of ``shape``), and round k gathers frames kN .. kN + N - 1 to rank 0, so memory holds
    N frames whatever the clip's length. Other ranks yield nothing (they must still exhaust the
    iterator: every round is a collective). A single process renders and yields every frame.
    """
    size, me = world_size(), rank()
    if size == 1:
        for i in range(count):
            yield render(i)
        return
    device = comm_device()
    for first in range(0, count, size):
        i = first + me
        frame = render(i).to(device) if i < count else torch.zeros(shape, dtype=torch.uint8, device=device)
        if tuple(frame.shape) != tuple(shape) or frame.dtype != torch.uint8:
            raise ValueError(f"render({i}) must return a uint8 tensor of shape {tuple(shape)}, "
                             f"got {frame.dtype} {tuple(frame.shape)}")
        slots = [torch.empty_like(frame) for _ in range(size)] if me == 0 else None
        dist.gather(frame, slots, dst=0)
        if me == 0:
            yield from (slots[r].cpu() for r in range(min(size, count - first)))
