"""Exact streaming: feed chunks of any size, get the same samples as the offline ``forward``.

:class:`Streamer` wraps anything with ``frame_length``, ``hop``, ``initial_state(batch, device,
dtype)`` and ``step(chunk[B, k·hop], state) -> (out[B, k·hop], state)`` — every
:class:`~snnse.models.base.Enhancer`, and the bare front-ends. It buffers input until whole
hops are available, runs all complete hops of a call in one vectorised ``step``, drops the
``frame_length − hop`` warm-up samples that precede the signal, and on :meth:`Streamer.flush`
pads the zeros the offline path pads, so that::

    torch.cat([s.feed(c) for c in chunks] + [s.flush()], -1) == model(torch.cat(chunks, -1))

(up to float rounding; the spike trains are identical). Calls that bring one hop take the fast
path of :mod:`snnse.fast_step` (under ``torch.no_grad``/``torch.inference_mode``). Modelled on
``denoiser.demucs.DemucsStreamer`` (feed/flush), without its approximations.

Where the model's fast path is compiled (:mod:`snnse.fast_cpp`: DPSNN with its learned front-end,
Spiking-S4 with the STFT, on the CPU), a run of one-hop calls goes through one
``torch.classes.snnse_step.Hop`` object (made by :func:`snnse.fast_step.stream_hop`): it gets
the weights once and keeps this stream's state, updated in place, so that a hop is one call with
one tensor in and one out (no per-hop lists of weights and state tensors, no state dict). The
state is still explicit and owned by the stream: :attr:`Streamer.state` returns it (a copy, with
the module path's structure) and assigning it continues from the given state; a call that brings
several hops, :meth:`Streamer.flush`, recording, autograd or changed weights take the general
path from the same state.
"""

from __future__ import annotations

import torch

from . import fast_step


class Streamer:
    """Stateful wrapper that streams a model; one instance per stream.

    Args:
        model: an :class:`~snnse.models.base.Enhancer` (or a front-end).
        batch: number of parallel streams (channels), fed as ``[batch, n]``.
        record: if True, per-layer activity from ``model.step`` is kept; see :meth:`records`.

    Shape:
        feed: ``[batch, n]`` (or ``[n]`` when ``batch == 1``) → ``[batch, m]`` (or ``[m]``),
        where ``m`` is what became final, possibly 0.
    """

    def __init__(self, model, batch: int = 1, record: bool = False):
        self.model, self.batch, self.record = model, int(batch), bool(record)
        self.hop, self.frame_length = model.hop, model.frame_length
        self.reset()

    def reset(self) -> None:
        """Forget everything, records included: the next :meth:`feed` starts a new stream."""
        self._records: dict[str, list[torch.Tensor]] = {}
        self._new_stream()

    def _new_stream(self) -> None:
        self._state = None
        self._hop = None  # (plan, Hop, level control, ...) while one-hop calls run compiled; _state is then stale
        self.pending: torch.Tensor | None = None
        self.total_in = 0
        self.total_out = 0
        self.to_skip = self.frame_length - self.hop
        self._squeeze = False

    @property
    def latency_samples(self) -> int:
        """Samples between an input sample arriving and its output (worst case): one window."""
        return self.frame_length

    @property
    def state(self):
        """The model's state after the samples fed so far (None before the first hop)."""
        if self._hop is not None:
            plan, hop, level = self._hop[:3]
            return plan.unflatten_state(hop.get_state(), level is not None)
        return self._state

    @state.setter
    def state(self, value) -> None:
        self._hop, self._state = None, value

    def _hop_step(self, x: torch.Tensor) -> torch.Tensor | None:
        """One hop ``[batch, hop]`` (or ``[hop]`` for batch 1) through the stream's compiled Hop (made here if
        needed), or None."""
        fh = self._hop
        if fh is not None:
            if fh[3] == fast_step.generation() and fh[2] is self.model.level and x.dtype == fh[4]:
                try:
                    return fh[5](x)
                except RuntimeError as err:
                    if "weights changed" not in str(err):
                        raise
            self.state = self.state  # continue from the same state with a new Hop (or the general path)
        if self.record:
            return None
        if self._state is None:
            self._state = self.model.initial_state(self.batch, x.device, x.dtype)
        made = fast_step.stream_hop(self.model, x if x.dim() == 2 else x[None], self._state)  # None: not an Enhancer
        if made is None:
            return None
        # (plan, Hop, level control, generation, dtype, the Hop's bound step: cheaper per call than hop.step;
        # measured: benchmarks/RESULTS.md)
        self._hop = (*made, self.model.level, fast_step.generation(), x.dtype, made[1].step)
        return made[1].step(x)

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        if self._hop is not None:
            self.state = self.state
        if self.state is None:
            self.state = self.model.initial_state(self.batch, chunk.device, chunk.dtype)
        if self.record:
            rec: dict = {}
            out, self.state = self.model.step(chunk, self.state, rec)
            for k, v in rec.items():
                self._records.setdefault(k, []).append(v)
        else:
            out, self.state = self.model.step(chunk, self.state)
        if self.to_skip:
            drop = min(self.to_skip, out.shape[-1])
            out, self.to_skip = out[..., drop:], self.to_skip - drop
        return out

    def feed(self, samples: torch.Tensor) -> torch.Tensor:
        """Add input samples; return the output samples that are now final."""
        if self._hop is not None and not self.to_skip and samples.shape[-1] == self.hop \
                and not self.pending.shape[-1] and not torch.is_grad_enabled():
            # the hot path: one hop, nothing pending, the stream's Hop running ([hop] in, [hop] out as it is)
            squeeze = samples.dim() == 1
            if (self.batch == 1) if squeeze else (samples.dim() == 2 and samples.shape[0] == self.batch):
                self._squeeze = squeeze
                out = self._hop_step(samples)
                if out is not None:
                    self.total_in += self.hop
                    self.total_out += self.hop
                    return out
        squeeze = self._squeeze = samples.dim() == 1
        x = samples.unsqueeze(0) if squeeze else samples
        if x.dim() != 2 or x.shape[0] != self.batch:
            raise ValueError(f"expected [{self.batch}, n] samples, got shape {tuple(samples.shape)}")
        self.total_in += x.shape[-1]
        pending = self.pending
        buf = x if pending is None or not pending.shape[-1] else torch.cat([pending, x], -1)
        size = buf.shape[-1]
        if size == self.hop:
            out = self._hop_step(buf)
            if out is not None:
                if pending is None or pending.shape[-1]:
                    self.pending = buf[:, :0]
                if self.to_skip:
                    drop = min(self.to_skip, self.hop)
                    out, self.to_skip = out[..., drop:], self.to_skip - drop
                self.total_out += out.shape[-1]
                return out.squeeze(0) if squeeze else out
        n = size - size % self.hop
        if n == size:  # whole hops (e.g. one hop per call): nothing left over, no slicing
            if pending is None or pending.shape[-1]:
                self.pending = buf[:, :0]
            out = self._run(buf) if n else buf
        else:
            self.pending = buf[:, n:]
            out = self._run(buf[:, :n]) if n else buf.new_zeros(self.batch, 0)
        self.total_out += out.shape[-1]
        return out.squeeze(0) if squeeze else out

    def flush(self) -> torch.Tensor:
        """Finish the stream: pad as the offline path does and return the remaining samples.

        The streamer is then ready for a new stream (recorded activity is kept until :meth:`reset`).
        """
        total = self.total_in
        pending = self.pending
        out = pending.new_zeros(self.batch, 0) if pending is not None else torch.zeros(self.batch, 0)
        if total > 0:
            n_frames = -(-(total + self.frame_length - self.hop) // self.hop)
            done = (total - pending.shape[-1]) // self.hop
            pad = (n_frames - done) * self.hop - pending.shape[-1]
            out = self._run(torch.cat([pending, pending.new_zeros(self.batch, pad)], -1))
            out = out[:, : total - self.total_out]
        squeeze = self._squeeze
        self._new_stream()  # records stay until reset()
        return out.squeeze(0) if squeeze else out

    def records(self) -> dict[str, torch.Tensor]:
        """Per-layer activity recorded so far, concatenated over time: ``name -> [B, F, C]``."""
        return {k: torch.cat(v, 1) for k, v in self._records.items()}
