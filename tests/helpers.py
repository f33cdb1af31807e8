"""Test helpers: real speech and "trained-looking" weights (neurons that actually fire)."""

import soundfile as sf
import torch


def speech(data_dir, seconds=1.5, name="p287_001"):
    x, sr = sf.read(data_dir / "voicebank_debug" / "noisy" / f"{name}.wav", dtype="float64")
    return torch.from_numpy(x[: int(seconds * sr)])


def make_fire(model):
    """Scale weights so that every spiking layer fires at a plausible rate (as after training)."""
    m = model.masker
    with torch.no_grad():
        if hasattr(m, "blocks"):  # DPSNN
            if hasattr(m.proj_unit, "threshold"):  # the ANN twin has a ReLU here
                m.proj_unit.threshold.fill_(0.3)
            for blk in m.blocks:
                blk.scnn.weight.mul_(8)
                blk.srnn_in.weight.mul_(6)
                blk.srnn_rec.weight.mul_(2)
        else:  # Spiking-S4
            if model.frontend.n_features != 257:  # learned front-end: small post-ReLU features
                m.encoder.weight.mul_(20)
            for layer in m.layers:
                layer.emission.weight.mul_(3)
    return model
