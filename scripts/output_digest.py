"""Digests of the bundled models' outputs on the demo clip, to compare two checkouts bit for bit.

    PYTHONPATH=OTHER_CHECKOUT/src python scripts/output_digest.py [--weights DIR]
    python scripts/output_digest.py [--weights DIR]

Prints, per bundled model, the sha256 (first 16 hex digits) of the float32 output of the offline
forward pass and of the ``Streamer`` fed 1,000-sample blocks, one thread, no autograd. Give both
runs the same ``--weights`` folder (default: this checkout's ``src/snnse/pretrained``) so that
only the code differs. Equal digests: the change kept every bit.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import snnse
from snnse.streaming import Streamer

HERE = Path(__file__).resolve().parents[1] / "src" / "snnse" / "pretrained"


def digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes()).hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=HERE)
    ap.add_argument("--models", nargs="+", default=["dpsnn-demo", "spiking-s4-demo"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    x, _ = sf.read(args.weights / "demo_noisy.wav", dtype="float32")
    xt = torch.from_numpy(x)
    print(f"snnse from {Path(snnse.__file__).parent}")
    for name in args.models:
        model = snnse.load(str(args.weights / f"{name}.pt")).eval()
        offline = model(xt[None])[0].numpy()
        st = Streamer(model)
        streamed = [np.asarray(st.feed(xt[i:i + 1000])).reshape(-1) for i in range(0, len(x), 1000)]
        streamed.append(np.asarray(st.flush()).reshape(-1))
        print(f"{name}: offline {digest(offline)}  streamed {digest(np.concatenate(streamed))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
