"""Hostile inputs to every entry point of pt3d_radnerf.ops: each case must give a clean
ValueError/TypeError/RuntimeError whose message names the argument, or a correct result.

Subprocess-safe: the case table runs in one child process that reports each case's outcome line by
line; if the child dies (segfault, abort) or hangs, the case it was on is reported as such and the
remaining cases continue in a fresh child. Run ``python -m tests.test_ops_hostile`` to print the
outcome table.
"""

import math
import os
import queue
import subprocess
import sys
import threading
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE_TIMEOUT_S = 60.0


class Case(NamedTuple):
    call: Callable[[], object]
    raises: Optional[Tuple[type, str]] = None  # (exception type, text the message must contain)
    check: Optional[Callable[[object], bool]] = None  # for a result: True when it is correct


def raises(exc, text):
    return {"raises": (exc, text)}


def ok(check):
    return {"check": check}


def _cases() -> Dict[str, Case]:
    from pt3d_radnerf import ops

    f32, f64 = torch.float32, torch.float64
    box = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    nan, inf = float("nan"), float("inf")
    o = torch.tensor([[0.0, 0.0, -3.0], [0.5, 0.2, -3.0], [nan, 0.0, -3.0], [0.0, 0.0, 1e30]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    full = torch.full((8**3 // 8,), 255, dtype=torch.uint8)
    march_kw = dict(cascades=1, resolution=8, dt_min=0.1)
    info = torch.tensor([[0, 3], [3, 5]])
    offsets, scales = ops.grid_level_layout(3, 2, 4, 2.0, 6)
    emb = torch.randn(offsets[-1], 2)
    meta = torch.device("meta")

    def composite(values=None, features=None, packed_info=info, **kw):
        values = torch.rand(8) if values is None else values
        features = torch.rand(8, 3) if features is None else features
        return ops.composite(values, features, packed_info, **kw)

    def march(rays_o=o, rays_d=d, bitfield=full, **kw):
        return ops.occupancy_march(rays_o, rays_d, box, bitfield, **{**march_kw, **kw})

    def finite(*ts):
        return all(bool(torch.isfinite(t).all()) for t in ts)

    def on_meta(out):
        return all(t.device.type == "meta" for t in (out if isinstance(out, tuple) else (out,)))

    C = {
        # ---- composite ----
        "composite/start+count overflows int64": dict(call=lambda: composite(packed_info=torch.tensor([[1, 2**63 - 1]])),
                                                     **raises(ValueError, "packed_info")),
        "composite/start and count 2^62": dict(call=lambda: composite(packed_info=torch.tensor([[2**62, 2**62]])),
                                               **raises(ValueError, "packed_info")),
        "composite/negative start": dict(call=lambda: composite(packed_info=torch.tensor([[-2, 3]])),
                                         **raises(ValueError, "packed_info")),
        "composite/negative count": dict(call=lambda: composite(packed_info=torch.tensor([[0, -3]])),
                                         **raises(ValueError, "packed_info")),
        "composite/overlapping rows": dict(call=lambda: composite(packed_info=torch.tensor([[0, 5], [3, 5]])),
                                           **raises(ValueError, "packed_info")),
        "composite/unsorted rows": dict(call=lambda: composite(packed_info=torch.tensor([[4, 4], [0, 4]])),
                                        **raises(ValueError, "packed_info")),
        "composite/packed_info (3,)": dict(call=lambda: composite(packed_info=torch.tensor([0, 3, 5])),
                                           **raises(ValueError, "packed_info")),
        "composite/float packed_info": dict(call=lambda: composite(packed_info=info.double()),
                                            **ok(lambda r: r.features.shape == (2, 3))),
        "composite/features 1-D": dict(call=lambda: composite(features=torch.rand(8)), **raises(ValueError, "features")),
        "composite/features rows != S": dict(call=lambda: composite(features=torch.rand(7, 3)),
                                             **raises(ValueError, "features")),
        "composite/ts length != S": dict(call=lambda: composite(ts=torch.rand(5)), **raises(ValueError, "ts")),
        "composite/bad density_mode": dict(call=lambda: composite(density_mode="density"),
                                           **raises(ValueError, "density_mode")),
        "composite/sigma without deltas": dict(call=lambda: composite(density_mode="sigma"), **raises(ValueError, "deltas")),
        "composite/deltas length != S": dict(call=lambda: composite(density_mode="sigma", deltas=torch.rand(3)),
                                             **raises(ValueError, "deltas")),
        "composite/transmittance (3,)": dict(call=lambda: composite(transmittance=torch.ones(3)),
                                             **raises(ValueError, "transmittance")),
        "composite/complex values": dict(call=lambda: composite(values=torch.rand(8, dtype=torch.complex64)),
                                         **raises(TypeError, "values")),
        "composite/NaN values": dict(call=lambda: composite(values=torch.full((8,), nan)),
                                     **ok(lambda r: bool(torch.isnan(r.opacity).all()))),
        "composite/huge sigma": dict(call=lambda: composite(values=torch.full((8,), 1e38), density_mode="sigma",
                                                            deltas=torch.ones(8)),
                                     **ok(lambda r: finite(r.features, r.opacity) and bool((r.opacity <= 1).all()))),
        "composite/empty": dict(call=lambda: composite(torch.zeros(0), torch.zeros(0, 3), torch.zeros(0, 2, dtype=torch.long)),
                                **ok(lambda r: r.features.shape == (0, 3))),
        "composite/NaN t_thresh": dict(call=lambda: composite(t_thresh=nan), **ok(lambda r: finite(r.features))),
        "composite/meta": dict(call=lambda: composite(torch.rand(8, device=meta), torch.rand(8, 3, device=meta),
                                                      info.to(meta)),
                               **ok(lambda r: on_meta(tuple(r)) and r.features.shape == (2, 3))),
        "composite_dense/features shape": dict(call=lambda: ops.composite_dense(torch.rand(4, 5), torch.rand(4, 6, 3)),
                                               **raises(ValueError, "features")),
        "composite_dense/transmittance shape": dict(
            call=lambda: ops.composite_dense(torch.rand(4, 5), torch.rand(4, 5, 3), transmittance=torch.ones(5)),
            **raises(ValueError, "transmittance")),
        "composite_dense/empty batch": dict(call=lambda: ops.composite_dense(torch.rand(0, 5), torch.rand(0, 5, 3)),
                                            **ok(lambda r: r.features.shape == (0, 3))),
        "dense_packed_info/negative": dict(call=lambda: ops.dense_packed_info(-1, 3), **raises(ValueError, "n_rays")),
        # ---- near_far_from_aabb / as_aabb ----
        "near_far/aabb of 5": dict(call=lambda: ops.near_far_from_aabb(o, d, box[:5]), **raises(ValueError, "aabb")),
        "near_far/NaN aabb": dict(call=lambda: ops.near_far_from_aabb(o, d, (nan,) + box[1:]), **raises(ValueError, "aabb")),
        "near_far/inf aabb": dict(call=lambda: ops.near_far_from_aabb(o, d, box[:5] + (inf,)), **raises(ValueError, "aabb")),
        "near_far/min > max": dict(call=lambda: ops.near_far_from_aabb(o, d, (1, 1, 1, -1, -1, -1)),
                                   **raises(ValueError, "aabb")),
        "near_far/int rays": dict(call=lambda: ops.near_far_from_aabb(o.long(), d.long(), box), **raises(TypeError, "rays_o")),
        "near_far/(N, 2) rays": dict(call=lambda: ops.near_far_from_aabb(o[:, :2], d[:, :2], box),
                                     **raises(ValueError, "rays_o")),
        "near_far/shape mismatch": dict(call=lambda: ops.near_far_from_aabb(o, d[:2], box), **raises(ValueError, "rays_d")),
        "near_far/dtype mismatch": dict(call=lambda: ops.near_far_from_aabb(o, d.double(), box), **raises(TypeError, "rays_d")),
        "near_far/not a tensor": dict(call=lambda: ops.near_far_from_aabb([[0, 0, 0]], d, box), **raises(TypeError, "rays_o")),
        "near_far/NaN and huge rays": dict(call=lambda: ops.near_far_from_aabb(o, d, box),
                                           **ok(lambda r: r[2].tolist() == [True, True, False, False])),
        "near_far/empty": dict(call=lambda: ops.near_far_from_aabb(o[:0], d[:0], box), **ok(lambda r: r[0].shape == (0,))),
        "near_far/meta": dict(call=lambda: ops.near_far_from_aabb(o.to(meta), d.to(meta), box),
                              **ok(lambda r: on_meta(r) and r[0].shape == (4,))),
        "as_aabb/(2, 3) box": dict(call=lambda: ops.as_aabb(torch.tensor(box).view(2, 3), o),
                                   **ok(lambda r: r.shape == (6,) and r.device.type == "cpu")),
        # ---- occupancy_march ----
        "march/jitter -5": dict(call=lambda: march(jitter=torch.full((4,), -5.0)), **raises(ValueError, "jitter")),
        "march/jitter 1": dict(call=lambda: march(jitter=torch.ones(4)), **raises(ValueError, "jitter")),
        "march/jitter NaN": dict(call=lambda: march(jitter=torch.full((4,), nan)), **raises(ValueError, "jitter")),
        "march/jitter (3,)": dict(call=lambda: march(jitter=torch.rand(3)), **raises(ValueError, "jitter")),
        "march/ray_t_min float64": dict(call=lambda: march(ray_t_min=torch.zeros(4, dtype=f64)),
                                        **raises(TypeError, "ray_t_min")),
        "march/bitfield size": dict(call=lambda: march(bitfield=full[:-1]), **raises(ValueError, "bitfield")),
        "march/bitfield float": dict(call=lambda: march(bitfield=full.float()), **raises(TypeError, "bitfield")),
        "march/resolution 6": dict(call=lambda: march(resolution=6), **raises(ValueError, "resolution")),
        "march/cascades 0": dict(call=lambda: march(cascades=0), **raises(ValueError, "cascades")),
        "march/dt_min 0": dict(call=lambda: march(dt_min=0.0), **raises(ValueError, "dt_min")),
        "march/dt_min NaN": dict(call=lambda: march(dt_min=nan), **raises(ValueError, "dt_min")),
        "march/t_max < t_min": dict(call=lambda: march(t_min=3.0, t_max=1.0), **raises(ValueError, "t_max")),
        "march/max_samples -5": dict(call=lambda: march(max_samples=-5), **raises(ValueError, "max_samples")),
        "march/aabb NaN": dict(call=lambda: ops.occupancy_march(o, d, (nan,) * 6, full, **march_kw),
                               **raises(ValueError, "aabb")),
        "march/NaN and huge rays": dict(call=lambda: march(),
                                        **ok(lambda r: r[3][2:, 1].tolist() == [0, 0] and bool((r[3][:2, 1] > 0).all()))),
        "march/empty": dict(call=lambda: march(rays_o=o[:0], rays_d=d[:0]), **ok(lambda r: r[0].numel() == 0)),
        "march/meta (data-dependent size)": dict(call=lambda: march(rays_o=o.to(meta), rays_d=d.to(meta),
                                                                    bitfield=full.to(meta)),
                                                 **raises(RuntimeError, "data-dependent")),
        # ---- morton3d / packbits ----
        "morton3d/int64 2^32 + 5": dict(call=lambda: ops.morton3d(torch.tensor([[2**32 + 5, 0, 0]])),
                                        **raises(ValueError, "coords")),
        "morton3d/negative": dict(call=lambda: ops.morton3d(torch.tensor([[-1, 0, 0]], dtype=torch.int32)),
                                  **raises(ValueError, "coords")),
        "morton3d/float": dict(call=lambda: ops.morton3d(torch.zeros(2, 3)), **raises(TypeError, "coords")),
        "morton3d/bool": dict(call=lambda: ops.morton3d(torch.zeros(2, 3, dtype=torch.bool)), **raises(TypeError, "coords")),
        "morton3d/(N, 2)": dict(call=lambda: ops.morton3d(torch.zeros(2, 2, dtype=torch.int32)), **raises(ValueError, "coords")),
        "morton3d/empty": dict(call=lambda: ops.morton3d(torch.zeros(0, 3, dtype=torch.int64)), **ok(lambda r: r.shape == (0,))),
        "morton3d/meta": dict(call=lambda: ops.morton3d(torch.zeros(4, 3, dtype=torch.int32, device=meta)),
                              **ok(lambda r: on_meta(r) and r.shape == (4,))),
        "morton3d_invert/int64 2^32 + 5": dict(call=lambda: ops.morton3d_invert(torch.tensor([2**32 + 5])),
                                               **raises(ValueError, "codes")),
        "morton3d_invert/2^30": dict(call=lambda: ops.morton3d_invert(torch.tensor([2**30])), **raises(ValueError, "codes")),
        "morton3d_invert/(N, 2)": dict(call=lambda: ops.morton3d_invert(torch.zeros(2, 2, dtype=torch.int32)),
                                       **raises(ValueError, "codes")),
        "morton3d_invert/float": dict(call=lambda: ops.morton3d_invert(torch.zeros(2)), **raises(TypeError, "codes")),
        "packbits/12 cells": dict(call=lambda: ops.packbits(torch.zeros(12), 0.5), **raises(ValueError, "grid")),
        "packbits/int grid": dict(call=lambda: ops.packbits(torch.zeros(16, dtype=torch.int32), 0.5),
                                  **raises(TypeError, "grid")),
        "packbits/NaN cells": dict(call=lambda: ops.packbits(torch.full((16,), nan), 0.5), **ok(lambda r: r.tolist() == [0, 0])),
        "packbits/NaN threshold": dict(call=lambda: ops.packbits(torch.ones(16), nan), **ok(lambda r: r.tolist() == [0, 0])),
        "packbits/meta": dict(call=lambda: ops.packbits(torch.zeros(16, device=meta), 0.5),
                              **ok(lambda r: on_meta(r) and r.shape == (2,))),
        # ---- encoders ----
        "grid_encode/(N, 4) inputs": dict(call=lambda: ops.grid_encode(torch.rand(5, 4), emb, offsets, scales),
                                          **raises(ValueError, "inputs")),
        "grid_encode/C = 3 table": dict(call=lambda: ops.grid_encode(torch.rand(5, 3), torch.rand(offsets[-1], 3), offsets,
                                                                     scales), **raises(ValueError, "embeddings")),
        "grid_encode/offsets[-1] != rows": dict(call=lambda: ops.grid_encode(torch.rand(5, 3), emb[:-8], offsets, scales),
                                                **raises(ValueError, "offsets")),
        "grid_encode/NaN scale": dict(call=lambda: ops.grid_encode(torch.rand(5, 3), emb, offsets, [nan] * len(scales)),
                                      **raises(ValueError, "scales")),
        "grid_encode/bad gridtype": dict(call=lambda: ops.grid_encode(torch.rand(5, 3), emb, offsets, scales, "dense"),
                                         **raises(ValueError, "gridtype")),
        "grid_encode/bound 0": dict(call=lambda: ops.grid_encode(torch.rand(5, 3), emb, offsets, scales, bound=0.0),
                                    **raises(ValueError, "bound")),
        "grid_encode/dtype mismatch": dict(call=lambda: ops.grid_encode(torch.rand(5, 3, dtype=f64), emb, offsets, scales),
                                           **raises(TypeError, "embeddings")),
        "grid_encode/int inputs": dict(call=lambda: ops.grid_encode(torch.zeros(5, 3, dtype=torch.long), emb, offsets,
                                                                    scales), **raises(TypeError, "inputs")),
        "grid_encode/NaN inputs": dict(call=lambda: ops.grid_encode(torch.full((5, 3), nan), emb, offsets, scales),
                                       **raises(ValueError, "inputs")),
        "grid_encode/huge inputs (outside: zeros)": dict(
            call=lambda: ops.grid_encode(torch.full((5, 3), 1e30), emb, offsets, scales),
            **ok(lambda r: r.shape == (5, 4) and not bool(r.any()))),
        "grid_encode/empty": dict(call=lambda: ops.grid_encode(torch.zeros(0, 3), emb, offsets, scales),
                                  **ok(lambda r: r.shape == (0, 4))),
        "grid_encode/meta": dict(call=lambda: ops.grid_encode(torch.rand(5, 3, device=meta), emb.to(meta), offsets, scales,
                                                              check_nan=False),
                                 **ok(lambda r: on_meta(r) and r.shape == (5, 4))),
        "sh_encode/degree 0": dict(call=lambda: ops.sh_encode(torch.rand(4, 3), 0), **raises(ValueError, "degree")),
        "sh_encode/degree 9": dict(call=lambda: ops.sh_encode(torch.rand(4, 3), 9), **raises(ValueError, "degree")),
        "sh_encode/(N, 2) dirs": dict(call=lambda: ops.sh_encode(torch.rand(4, 2)), **raises(ValueError, "dirs")),
        "sh_encode/int dirs": dict(call=lambda: ops.sh_encode(torch.zeros(4, 3, dtype=torch.long)), **raises(TypeError, "dirs")),
        "sh_encode/not a tensor": dict(call=lambda: ops.sh_encode([[0.0, 0.0, 1.0]]), **raises(TypeError, "dirs")),
        "sh_encode/NaN dirs": dict(call=lambda: ops.sh_encode(torch.full((4, 3), nan)),
                                   **ok(lambda r: r.shape == (4, 16) and bool(torch.isnan(r[:, 1:]).all()))),
        "sh_encode/empty": dict(call=lambda: ops.sh_encode(torch.zeros(0, 3)), **ok(lambda r: r.shape == (0, 16))),
        "sh_encode/meta": dict(call=lambda: ops.sh_encode(torch.zeros(4, 3, device=meta)),
                               **ok(lambda r: on_meta(r) and r.shape == (4, 16))),
        "grid_level_layout/one level": dict(call=lambda: ops.grid_level_layout(2, 1, 4, 2.0, 4),
                                            **ok(lambda r: r == ([0, 16], [3.0]))),
        # ---- occupancy-grid helpers (pure torch) ----
        "dense_to_morton_index/resolution 2048": dict(call=lambda: ops.dense_to_morton_index(2048, meta),
                                                      **ok(lambda r: on_meta(r) and r.shape == (2048**3,))),
        "dilate_occupancy/bits of another resolution": dict(
            call=lambda: ops.dilate_occupancy(torch.zeros(1, 8**3, dtype=torch.bool), 16), **raises(ValueError, "bits")),
        "decayed_max_update/values length": dict(
            call=lambda: ops.decayed_max_update(torch.zeros(1, 8), torch.tensor([0, 1]), torch.ones(3), 0.9),
            **raises(ValueError, "values")),
        "occupancy_threshold/no seen cell": dict(call=lambda: ops.occupancy_threshold(-torch.ones(1, 8), 0.5),
                                                 **ok(lambda r: r == 0.5)),
    }
    return {name: Case(**spec) for name, spec in C.items()}


def _run_case(case: Case) -> str:
    """'PASS' or 'FAIL: why' for one case, in this process."""
    try:
        result = case.call()
    except Exception as err:  # noqa: BLE001 - classified below
        text = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if case.raises is None:
            return f"FAIL: unexpected {text}"
        exc, needle = case.raises
        if not isinstance(err, exc) or needle not in str(err):
            return f"FAIL: expected {exc.__name__} naming {needle!r}, got {text}"
        return f"PASS ({text[:150]})"
    if case.raises is not None:
        return f"FAIL: expected {case.raises[0].__name__}, got a result"
    return "PASS (correct result)" if case.check(result) else "FAIL: wrong result"


def _child(names: List[str]) -> None:
    """Runs the named cases in order, one 'START'/'DONE' line pair each."""
    cases = _cases()
    for name in names:
        print(f"START {name}", flush=True)
        if name == "__crash__":  # the harness's own test: a hard crash mid-table
            os.abort()
        print(f"DONE {name}\t{_run_case(cases[name])}", flush=True)


def run_table(names: List[str], timeout_s: float = CASE_TIMEOUT_S) -> Dict[str, str]:
    """Outcome per case; a child that dies or hangs is replaced and the rest run on."""
    outcomes: Dict[str, str] = {}
    todo = list(names)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    while todo:
        child = subprocess.Popen([sys.executable, "-m", "tests.test_ops_hostile", *todo], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in child.stdout] + [lines.put(None)], daemon=True).start()
        current = None
        while True:
            try:
                line = lines.get(timeout=timeout_s)
            except queue.Empty:
                child.kill()
                outcomes[current or todo[0]] = f"FAIL: hung for more than {timeout_s:.0f} s"
                break
            if line is None:
                child.wait()
                if current is not None:
                    outcomes[current] = f"FAIL: the process died (exit code {child.returncode})"
                elif child.returncode != 0 and todo and todo[0] not in outcomes:
                    err = child.stderr.read().strip().splitlines()[-1:] or [""]
                    outcomes[todo[0]] = f"FAIL: the process failed before the case ({err[0]})"
                break
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "START":
                current = rest
            elif kind == "DONE":
                name, _, outcome = rest.partition("\t")
                outcomes[name], current = outcome, None
        child.stdout.close()
        child.stderr.close()
        todo = [n for n in todo if n not in outcomes]
    return outcomes


def test_hostile_inputs_to_every_op():
    names = list(_cases())
    outcomes = run_table(names)
    failed = {n: o for n, o in outcomes.items() if not o.startswith("PASS")}
    assert not failed, "\n".join(f"{n}: {o}" for n, o in failed.items())
    assert len(outcomes) == len(names)


def test_every_public_op_is_in_the_table():
    from pt3d_radnerf import ops

    tested = {name.split("/")[0] for name in _cases()}
    aliases = {"near_far": "near_far_from_aabb", "march": "occupancy_march"}
    tested = {aliases.get(n, n) for n in tested}
    assert set(ops.__all__) <= tested, set(ops.__all__) - tested


def test_harness_reports_a_crash_and_carries_on():
    outcomes = run_table(["packbits/NaN cells", "__crash__", "packbits/12 cells"])
    assert outcomes["__crash__"].startswith("FAIL: the process died"), outcomes
    assert outcomes["packbits/NaN cells"].startswith("PASS") and outcomes["packbits/12 cells"].startswith("PASS")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _child(sys.argv[1:])
    else:
        for case_name, outcome in run_table(list(_cases())).items():
            print(f"{case_name:48s} {outcome}")
