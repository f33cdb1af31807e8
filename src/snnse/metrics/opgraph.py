"""The per-step operation graph of an snnse model: synaptic layers and neuron groups.

:func:`op_graph` walks the front-end and asks the masker's class for its builder (``op_graph =
"module:attribute"``, resolved by :func:`snnse.models.base.masker_part`; the builders of the
bundled families are in :mod:`snnse.metrics.opgraph_models`). The conventions (event kinds,
what counts as a synapse or a neuron op) are in :mod:`snnse.metrics.opcount`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SynLayer:
    """One synaptic layer of the per-step operation graph.

    Attributes:
        name: layer name (``encoder``, ``proj``, ``srnn_rec``, ``s4_0.ssm``...).
        synapses: weights used per step (dense operations per step for S4D).
        driver: record key whose event rate drives the layer, or ``"dense"``.
        event: ``"spike"`` (binary events, accumulates), ``"graded"`` (sparse graded events,
            MACs) or ``"dense"`` (rate 1, MACs).
        module: dotted path of the module holding the weights.
        frontend: True for the front-end's analysis/synthesis layers.
        note: what the input is.
    """

    name: str
    synapses: int
    driver: str
    event: str
    module: str
    frontend: bool = False
    note: str = ""


@dataclass
class NeuronGroup:
    """A group of units updated every step.

    Attributes:
        name: record key or module name. kind: unit class name. units: number of units.
        counted: True if the units keep state (counted as NeuronOps).
        module: dotted path of the unit module.
    """

    name: str
    kind: str
    units: int
    counted: bool
    module: str


@dataclass
class OpGraph:
    """Per-step operation graph of a model (see :func:`op_graph`)."""

    model: str
    spiking: bool
    sample_rate: int
    hop: int
    frame_length: int
    layers: list[SynLayer] = field(default_factory=list)
    neurons: list[NeuronGroup] = field(default_factory=list)
    record_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.sample_rate / self.hop

    @property
    def synapses(self) -> int:
        """All synapses (weights used per step), whatever drives them."""
        return sum(layer.synapses for layer in self.layers)

    @property
    def dense_macs_per_step(self) -> int:
        """MACs per step if every layer ran dense (the ANN-equivalent count)."""
        return self.synapses

    @property
    def neuron_units(self) -> int:
        """Stateful units updated per step (NeuronOps per step)."""
        return sum(g.units for g in self.neurons if g.counted)

    def event_keys(self) -> list[str]:
        """Record keys whose rates the counts need (drivers of spike/graded layers)."""
        return sorted({layer.driver for layer in self.layers if layer.event != "dense"})

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "spiking": self.spiking,
            "sample_rate": self.sample_rate,
            "hop": self.hop,
            "frame_length": self.frame_length,
            "steps_per_second": self.steps_per_second,
            "layers": [asdict(layer) for layer in self.layers],
            "neurons": [asdict(g) for g in self.neurons],
            "record_keys": list(self.record_keys),
            "synapses_per_step": self.synapses,
            "dense_macs_per_step": self.dense_macs_per_step,
            "neuron_units_per_step": self.neuron_units,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------
# Graph construction
# ---------------------------------------------------------------------------------------------
def _unit_event(unit) -> str:
    """``"spike"`` for a spiking unit's output, ``"dense"`` for an ANN activation."""
    return "spike" if getattr(unit, "spiking", False) else "dense"


def _neuron(name: str, unit, module: str) -> NeuronGroup:
    return NeuronGroup(name, type(unit).__name__, int(unit.size), int(getattr(unit, "n_state", 0)) > 0, module)


def _frontend_layers(fe) -> tuple[list[SynLayer], list[SynLayer]]:
    """(analysis layers, synthesis layers) of a front-end."""
    from ..frontends import ConvFrontend, STFTFrontend

    if isinstance(fe, ConvFrontend):
        return ([SynLayer("encoder", fe.encoder.weight.numel(), "dense", "dense", "frontend.encoder", True,
                          "Conv1d(1, N, L, stride) on the audio frame (L×N weights)")],
                [SynLayer("decoder", fe.decoder.weight.numel(), "dense", "dense", "frontend.decoder", True,
                          "ConvTranspose1d(N, 1, L, stride) on the masked features (N×L weights)")])
    if isinstance(fe, STFTFrontend):
        return ([SynLayer("stft", fe.analysis_weight.numel(), "dense", "dense", "frontend.analysis_weight", True,
                          "STFT as a frozen convolution on the audio frame (2K×L weights, buffer)")],
                [SynLayer("istft", fe.synthesis_weight.numel(), "dense", "dense", "frontend.synthesis_weight",
                          True, "iSTFT as a frozen convolution on the masked spectrum (2K×L weights, buffer)")])
    raise TypeError(f"cannot build an operation graph for front-end {type(fe).__name__}; "
                    "supported: ConvFrontend, STFTFrontend")


def op_graph(model) -> OpGraph:
    """Build the per-step operation graph of an :class:`~snnse.models.base.Enhancer`.

    Walks the front-end (:class:`~snnse.frontends.ConvFrontend`,
    :class:`~snnse.frontends.STFTFrontend`) and the masker
    (:class:`~snnse.models.dpsnn.DPSNNMasker`, :class:`~snnse.models.spiking_s4.SpikingS4Masker`);
    the counts come from the modules' weight shapes.

    Args:
        model: an Enhancer.

    Returns:
        The :class:`OpGraph` (front-end analysis layers, masker layers, synthesis layers).

    Raises:
        TypeError: For a model, front-end or masker type this module does not know.

    References:
        Timcheck et al., "The Intel neuromorphic DNS challenge", NCE 3(3) 034005, 2023.
    """
    from ..models.base import masker_part

    fe, m = getattr(model, "frontend", None), getattr(model, "masker", None)
    if fe is None or m is None:
        raise TypeError(f"cannot build an operation graph for {type(model).__name__}: not an snnse Enhancer")
    g = OpGraph(getattr(model, "name", None) or type(m).__name__, bool(model.spiking), int(fe.sample_rate),
                int(fe.hop), int(fe.frame_length))
    analysis, synthesis = _frontend_layers(fe)
    builder = masker_part(m, "op_graph")  # the masker's class names its builder
    if builder is None:
        raise TypeError(f"cannot build an operation graph for masker {type(m).__name__}: its class "
                        "names no op_graph builder (see snnse.models.base.masker_part)")
    body = builder(m, g)
    g.layers = analysis + body + synthesis
    if not g.spiking:
        g.notes.append("ANN twin: assumed to run on dense hardware, every layer counted dense")
    return g
