"""Throughput of AudioRadianceField: samples/s forward and forward+backward, and MACs per sample.

RAD-NeRF's sizes (DeepSpeech 29-d audio windows, attention over 8 frames, 2^16-row grids). The
samples lie uniformly in the head box and are split over 4 cameras, each with its own audio
(8, 16, 29), frame code and eye value; one call encodes the 4 cameras' audio and runs ``query()``
(spatial grid, ambient MLP, ambient grid, sigma MLP, SH, colour MLP) on every sample, as the
renderer does. fwd+bwd backpropagates into every parameter. Baseline in the same run: the same
field with both grid encoders replaced by the pure-PyTorch twin (``ops.reference.grid_encode``).

    python benchmarks/bench_field.py [--device cuda] [--log2-samples 15 17] [--threads N] [--write-readme]
    python benchmarks/bench_field.py --bf16 [--ckpt CKPT] [--log2-samples 12 14] [--threads 2] [--write-readme]

``--bf16``: whether bfloat16 autocast pays on the CPU at the render's batch sizes (a 128^2 frame's
field calls have up to 2^14 samples). Forward without grad of ``field_call`` with the field's MLPs in float32 and under bfloat16 autocast
(``field.mlp_autocast``), and of the MLPs' Linear layers alone at their per-sample shapes, float32
vs autocast, measured interleaved in one run, and what it costs in accuracy: the largest
colour error and relative density error of the autocast field against float32 (on a trained
field with ``--ckpt``, else the random initialisation). README table ``field-bf16``.
"""

import copy
import os
import sys
import time
import warnings
from typing import Dict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_rate, markdown_table, parser, publish, time_call  # noqa: E402

from pt3d_radnerf.models import AudioRadianceField  # noqa: E402
from pt3d_radnerf.models.radiance_field import RADNERF_AABB  # noqa: E402
from pt3d_radnerf.ops import reference  # noqa: E402

CAMERAS = 4


def make_inputs(field: AudioRadianceField, n: int, cameras: int = CAMERAS, device="cpu") -> Dict[str, torch.Tensor]:
    """n samples in the head box over ``cameras`` cameras: points, dirs (n, 3), cam (n,) camera of
    each sample (contiguous blocks), audio (cameras, 8, W, C), frame (cameras,), eye (cameras, 1)."""
    lo, hi = torch.tensor(RADNERF_AABB[:3]), torch.tensor(RADNERF_AABB[3:])
    return {
        "points": (lo + (hi - lo) * torch.rand(n, 3)).to(device),
        "dirs": torch.nn.functional.normalize(torch.randn(n, 3), dim=-1).to(device),
        "cam": (torch.arange(n) * cameras // n).to(device),
        "audio": torch.randn(cameras, 8, field.audio_window, field.audio_width, device=device),
        "frame": torch.randint(field.num_frames, (cameras,), device=device),
        "eye": torch.rand(cameras, 1, device=device) * 0.5,
    }


def field_call(field: AudioRadianceField, inp: Dict[str, torch.Tensor]):
    """Per-camera audio codes, then query() per sample: sigma (n,), rgb (n, 3), ambient (n, 2)."""
    cam = inp["cam"]
    enc_a = field.encode_audio(inp["audio"])  # (cameras, dim_aud)
    return field.query(inp["points"], inp["dirs"], enc_a[cam], field.individual_codes[inp["frame"]][cam],
                       inp["eye"][cam])


def measure(field: AudioRadianceField, n: int, device="cpu", repeats: int = 3,
            min_time: float = 0.2) -> Dict[str, float]:
    """Samples per second of ``field_call`` on n samples: {"fwd": no-grad forward, "fwd+bwd":
    forward + backward into every parameter}."""
    inp = make_inputs(field, n, device=device)

    def forward():
        with torch.no_grad():
            field_call(field, inp)

    def forward_backward():
        field.zero_grad(set_to_none=True)
        sigma, rgb, ambient = field_call(field, inp)
        (sigma.mean() + rgb.mean() + ambient.abs().mean()).backward()

    return {name: n / time_call(fn, device, repeats=repeats, min_time=min_time)
            for name, fn in (("fwd", forward), ("fwd+bwd", forward_backward))}


def with_twin_grids(field: AudioRadianceField) -> AudioRadianceField:
    """A copy of ``field`` whose two grid encoders run the pure-PyTorch twin (same tables)."""
    twin = copy.deepcopy(field)
    for enc in (twin.encoder, twin.encoder_ambient):
        enc.forward = lambda x, e=enc: reference.grid_encode(
            x, e.embeddings, e.offsets, e.scales, e.gridtype, e.align_corners, e.interpolation, e.bound)
    return twin


def macs(field: AudioRadianceField) -> Dict[str, int]:
    """Multiply-adds: per sample in the MLPs and per camera in the audio nets (fvcore, which counts
    one multiply-add as one flop), and per sample in the grid interpolation (analytic)."""
    cpu = copy.deepcopy(field).cpu()
    inp = make_inputs(cpu, 16, cameras=1)
    enc_a = torch.zeros(16, cpu.dim_aud)
    code = cpu.individual_codes[:1].expand(16, -1)

    class Query(torch.nn.Module):  # query() as a module, so that tracing sees the parameters
        def __init__(self):
            super().__init__()
            self.field = cpu

        def forward(self, points, dirs, enc_a, code, eye):
            return self.field.query(points, dirs, enc_a, code, eye)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import (torch.jit.script) and tracer warnings
        from fvcore.nn import FlopCountAnalysis

        per_sample = FlopCountAnalysis(Query(), (inp["points"], inp["dirs"], enc_a, code, inp["eye"].expand(16, 1)))
        audio = FlopCountAnalysis(cpu.audio_net, (inp["audio"][0],))
        analyses = [per_sample, audio]
        if cpu.audio_att_net is not None:
            analyses.append(FlopCountAnalysis(cpu.audio_att_net, (torch.zeros(1, 8, cpu.dim_aud),)))
        counts = [c.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total() for c in analyses]
    grid = sum(e.num_levels * 2**e.input_dim * e.level_dim for e in (field.encoder, field.encoder_ambient))
    return {"mlp_per_sample": counts[0] // 16, "audio_per_camera": sum(counts[1:]), "grid_per_sample": grid}


def interleaved_best(fns: Dict[str, object], repeats: int) -> Dict[str, float]:
    """Best seconds per call of each of ``fns``, timed in turns (a load spike hits all alike)."""
    best = {k: float("inf") for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            start = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def bf16_table(field: AudioRadianceField, log2_samples, repeats: int) -> str:
    """float32 vs bfloat16 autocast, forward without grad (see the module docstring)."""
    shapes = [(field.encoder.output_dim if net is field.ambient_net and i == 0 else m.in_features, m.out_features)
              for net in (field.ambient_net, field.sigma_net, field.color_net)
              for i, m in enumerate(x for x in net if isinstance(x, torch.nn.Linear))]
    rows = []
    for k in log2_samples:
        n = 2**k
        inp = make_inputs(field, n)
        xs = [torch.rand(n, i) for i, _ in shapes]
        ws = [torch.randn(o, i) for i, o in shapes]

        def mlps():
            for x, w in zip(xs, ws):
                torch.nn.functional.linear(x, w)

        def mlps_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mlps()

        def call(dtype):
            def run():
                field.mlp_autocast = dtype
                return field_call(field, inp)
            return run

        with torch.no_grad():
            t = interleaved_best({"field": call(None), "field bf16": call(torch.bfloat16), "mlps": mlps,
                                  "mlps bf16": mlps_bf16}, repeats)
            sigma, rgb, _ = call(None)()
            sigma_b, rgb_b, _ = call(torch.bfloat16)()
            field.mlp_autocast = None
        rgb_err = float((rgb_b.float() - rgb).abs().max())
        sigma_err = float(((sigma_b.float() - sigma).abs() / sigma.abs().clamp_min(1e-3)).max())
        for what in ("field", "mlps"):
            rows.append([f"2^{k}", "query() + audio" if what == "field" else "MLP GEMMs only",
                         f"{fmt_rate(n / t[what])} samples/s", f"{fmt_rate(n / t[what + ' bf16'])} samples/s",
                         f"{t[what] / t[what + ' bf16']:.2f}x",
                         f"{rgb_err:.1e} / {sigma_err:.1e}" if what == "field" else ""])
            print(" | ".join(rows[-1]), flush=True)
    return markdown_table(["samples", "what", "float32", "bf16 autocast", "speed-up",
                           "max colour err / max rel. sigma err"], rows)


def main():
    p = parser(__doc__)
    p.add_argument("--log2-samples", type=int, nargs="+", default=None, help="default 15 17 (--bf16: 12 14)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--bf16", action="store_true", help="float32 vs bfloat16 autocast, forward (CPU)")
    p.add_argument("--ckpt", help="--bf16: a trained head checkpoint (default: a randomly initialised field)")
    p.add_argument("--repeats", type=int, default=20, help="--bf16: timed calls of each variant")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bf16:
        torch.manual_seed(0)
        if args.ckpt:
            from pt3d_radnerf.training import HeadModel
            field = HeadModel.from_checkpoint(args.ckpt).field.eval()
        else:
            field = AudioRadianceField("deepspeech").eval()
        body = (f"{'trained field ' + os.path.basename(args.ckpt) if args.ckpt else 'random field'}, "
                f"forward without grad, best of {args.repeats} interleaved calls\n\n")
        publish("field-bf16", "cpu", body + bf16_table(field, args.log2_samples or [12, 14], args.repeats),
                args.write_readme)
        return
    args.log2_samples = args.log2_samples or [15, 17]
    torch.manual_seed(0)
    field = AudioRadianceField("deepspeech").to(args.device)
    twin = with_twin_grids(field)
    rows = []
    for k in args.log2_samples:
        ours, stock = measure(field, 2**k, args.device), measure(twin, 2**k, args.device, repeats=1)
        for name in ours:
            rows.append([f"2^{k}", name, f"{fmt_rate(ours[name])} samples/s", f"{fmt_rate(stock[name])} samples/s",
                         f"{ours[name] / stock[name]:.1f}x"])
            print(" | ".join(rows[-1]), flush=True)
    m = macs(field)
    per_sample = m["mlp_per_sample"] + m["grid_per_sample"]
    table = markdown_table(
        ["samples (4 cameras)", "pass", "field", "field, pure-PyTorch grid twin", "speed-up"], rows)
    table += "\n\n" + markdown_table(["multiply-adds", "count"], [
        ["MLPs per sample (ambient, sigma, colour), fvcore", f"{m['mlp_per_sample']:,}"],
        ["grid interpolation per sample (3-D + 2-D), analytic", f"{m['grid_per_sample']:,}"],
        ["audio nets per camera (AudioNet x 8 frames + AudioAttNet), fvcore", f"{m['audio_per_camera']:,}"],
        [f"forward per sample, 2^{args.log2_samples[0]} samples / {CAMERAS} cameras",
         f"{per_sample + m['audio_per_camera'] * CAMERAS // 2**args.log2_samples[0]:,}"],
    ])
    table += ("\n\nfvcore counts one multiply-add as one flop and only sees aten ops: the custom autograd "
              "ops (grid encoders, SH encoding, trunc_exp) and elementwise activations are not in its "
              "count, so the grid encoders are counted by hand as levels x 2^D corners x channels "
              "interpolation multiply-adds (16 x 8 x 2 + 16 x 4 x 2; index hashing and corner weights "
              "not included).")
    publish("field", args.device, table, args.write_readme)


if __name__ == "__main__":
    main()
