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


# How closely snnse's metrics reproduce ../shared/data/reference_metrics.json on the six
# voicebank_debug pairs: the figures the README states. Largest deviations measured (numpy 2.4.6,
# pesq 0.0.4, pystoi 0.4.1, onnxruntime 1.32.0): PESQ-WB 1.2e-5, CBAK 5.6e-6, CSIG 3.08e-4,
# COVL 1.5e-4, STOI 3.9e-7, ESTOI 1.1e-5, SI-SNR 4.8e-13, DNSMOS 2.9e-8.
REF_TOL = {"pesq_wb": 2e-5, "cbak": 2e-5, "csig": 3.1e-4, "covl": 3.1e-4,
           "stoi": 2e-5, "estoi": 2e-5, "sisnr": 2e-5,
           "dnsmos_sig": 3e-7, "dnsmos_bak": 3e-7, "dnsmos_ovrl": 3e-7}
