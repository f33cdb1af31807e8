"""Speed of both models at their paper configurations, measured in one run.

Prints parameters, the training-step time for a batch of 8 × 1 s (forward, loss, backward,
Adam step), the offline real-time factor, and the streaming compute per hop on one thread as a
fraction of the hop duration. The training step is timed with each neuron time-loop backend
(:mod:`snnse.fused`): ``autograd`` (the per-step graph, the old path and test oracle), ``fused``
(one autograd node per sequence, PyTorch loops) and ``cpp`` (the same with the compiled loops),
interleaved so that the ratios compare like with like on a shared machine. For DPSNN it also
times the naive alternative — a per-frame Python loop over all layers (``model.step`` one hop at
a time, with autograd) — and reports the speed-up of the vectorised training step over it.

Usage: python benchmarks/bench_models.py [--models dpsnn spiking_s4] [--threads N] [--repeats R]
Numbers are wall-clock medians on this machine; compare ratios within one run only. On a machine
shared with other busy processes, run with ``OMP_WAIT_POLICY=PASSIVE``: with the default
(spinning) policy every small parallel region of the per-step autograd path can wait for a
descheduled OpenMP worker, which inflates that path's time many-fold and the ratios with it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import snnse
from snnse import kernels, neurons
from snnse.models import count_parameters
from snnse.streaming import Streamer

SR = 16000


def neg_sisnr(est, ref, eps=1e-8):
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps) * ref
    noise = est - proj
    return -10 * torch.log10(proj.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps).mean()


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_step_fn(model, batch, seconds=1.0, per_frame=False):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    noisy = torch.randn(batch, int(seconds * SR)) * 0.1
    clean = noisy * 0.5

    def step():
        opt.zero_grad(set_to_none=True)
        if per_frame:  # naive: every layer, one frame at a time, through the streaming step
            state = model.initial_state(batch)
            outs = []
            for i in range(0, noisy.shape[1], model.hop):
                y, state = model.step(noisy[:, i : i + model.hop], state)
                outs.append(y)
            est = torch.cat(outs, -1)[:, model.frame_length - model.hop :]
            loss = neg_sisnr(est, clean[:, : est.shape[1]])
        else:
            loss = neg_sisnr(model(noisy), clean)
        loss.backward()
        opt.step()

    return step


def backend_times(model, batch, backends, repeats):
    """Median training-step time per neuron backend, the backends interleaved in each round."""
    step = train_step_fn(model, batch)
    times = {b: [] for b in backends}
    for b in backends:  # warm-up (and the C++ build, if not cached)
        with neurons.backend(b):
            step()
    for _ in range(repeats):
        for b in backends:
            with neurons.backend(b):
                t = time.perf_counter()
                step()
                times[b].append(time.perf_counter() - t)
    return {b: statistics.median(v) for b, v in times.items()}


def per_hop_time(model, seconds=2.0, repeats=3):
    st = Streamer(model)
    x = torch.randn(int(seconds * SR)) * 0.1
    hop = model.hop
    with torch.inference_mode():
        for i in range(0, 20 * hop, hop):  # warm-up
            st.feed(x[i : i + hop])
        best = float("inf")
        for _ in range(repeats):
            n, t = 0, time.perf_counter()
            for i in range(0, x.shape[0] - hop + 1, hop):
                st.feed(x[i : i + hop])
                n += 1
            best = min(best, (time.perf_counter() - t) / n)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["dpsnn", "spiking_s4"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads for training/offline")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-naive", action="store_true", help="skip the (slow) per-frame training oracle")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"# snnse {snnse.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s) for training/offline, 1 thread for streaming, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}{load}\n")
    backends = ["autograd", "fused"] + (["cpp"] if kernels.load() is not None else [])
    print("| model | params | latency | train step 8×1 s: " + " | ".join(backends) + " | speed-up "
          + " | ".join(f"{b}/autograd" for b in backends[1:]) + " | offline RTF | stream per hop | per hop / hop |")
    print("|---" * (5 + 2 * len(backends)) + "|")
    notes = []
    for name in args.models:
        model = snnse.get(name)
        torch.set_num_threads(args.threads)
        model.train()
        bt = backend_times(model, 8, backends, args.repeats)
        t_train = min(bt.values())
        if name == "dpsnn" and not args.no_naive:
            t_naive = timed(train_step_fn(model, 8, per_frame=True), 1)
            notes.append(f"- {name}: per-frame Python loop over all layers: {t_naive:.2f} s per training step; "
                         f"vectorised step ({neurons.get_backend()} backend) is {t_naive / t_train:.1f}× faster")
        model.eval()
        x = torch.randn(1, 10 * SR) * 0.1
        with torch.inference_mode():
            t_off = timed(lambda: model(x), args.repeats)
        torch.set_num_threads(1)
        t_hop = per_hop_time(model, repeats=args.repeats)
        hop_s = model.hop / SR
        train = " | ".join(f"{bt[b]:.3f} s" for b in backends)
        ratio = " | ".join(f"{bt['autograd'] / bt[b]:.2f}×" for b in backends[1:])
        print(f"| {name} | {count_parameters(model):,} | {model.latency_ms:g} ms | {train} | {ratio} | "
              f"{t_off / 10:.4f} | {t_hop * 1e6:.0f} µs | {100 * t_hop / hop_s:.1f} % of {hop_s * 1e3:g} ms |")
    if notes:
        print()
        print("\n".join(notes))


if __name__ == "__main__":
    main()
