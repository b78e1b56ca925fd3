"""Hope as an online model: predict at t, learn when the target is realised, checkpoint whole.

The self-modifying memories write during :meth:`Hope.predict` (label-free). The CMS levels learn in
:meth:`Hope.learn` from task-loss gradients of forecasts whose targets have just been realised; the
gradient is taken at the level's current weights on the CMS input kept from the forecast bar (a ring
buffer of the last 64 bars: more than the longest horizon, 24, plus one 8-bar call), summed into the
level's accumulator, and applied when the bar clock reaches a multiple of the level's period (eq. 71).
"""

from __future__ import annotations

import torch

from learner.hope.calibration import ReturnCalibration
from learner.hope.config import HopeConfig
from learner.hope.memory import MemoryState
from learner.hope.model import HopeNet, HopeState
from learner.hope.titans import CallActivity, TitansState, pack_memories, unpack_memories
from learner.protocol import OnlineModel

RING = 64


class MetaMismatchError(ValueError):
    """A fast state saved with other meta-weights than the ones loaded."""


class Hope(OnlineModel):
    def __init__(
        self,
        cfg: HopeConfig,
        net: HopeNet | None = None,
        device: str | torch.device = "cpu",
        name: str = "hope",
        compile: bool = False,
    ):
        """``compile``: run the memories' write through torch.compile (``SelfModifyingTitans.compile_write``)."""
        self.cfg = cfg
        self.name = name
        self.n_features = cfg.n_features
        self.device = torch.device(device)
        self.net = (net if net is not None else HopeNet(cfg)).to(self.device)
        self.net.cfg = cfg  # variants (ablations) may run the same meta-weights under another config
        self.net.titans.cfg = cfg
        self.net.cms.cfg = cfg
        for p in self.net.parameters():
            p.requires_grad_(False)
        if compile:
            self.net.titans.compile_write()
        self.state: HopeState | None = None
        self.ring: torch.Tensor | None = None
        self._act: CallActivity | None = None
        self._theta: list[dict[str, torch.Tensor]] | None = None  # cache of the CMS levels' weights (_levels)
        self._loss_w = torch.tensor(cfg.loss_weights, device=self.device)  # on the device once, not per call
        self.calib: ReturnCalibration | None = None  # the return outputs' online shrinkage (ret_calib)

    # ------------------------------------------------------------------ protocol
    def reset(self, n_streams: int) -> None:
        with torch.no_grad():
            self.state = self.net.init_state(n_streams)
        self.ring = torch.zeros(n_streams, RING, self.cfg.d_model, device=self.device)
        self._act, self._theta = None, None
        self.calib = ReturnCalibration(self.cfg, n_streams, RING, self.device) if self.cfg.ret_calib else None

    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert self.state is not None, "call reset() first"
        # inputs come from the host once per call; non_blocking: no wait on a GPU (a no-op on the CPU)
        x, mask = x.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        L = x.shape[1]
        for period in self.cfg.cms_periods:  # every level, not only the fastest: a level must see its step
            if self.state.step % period + L > period:
                raise ValueError(f"a call of {L} bars crosses the CMS period {period}; call learn() at each")
        theta = self._levels()  # outside inference mode: learn() differentiates at these weights
        # inference mode, not only no_grad: the memories write in closed form, nothing here is ever differentiated,
        # and torch skips view and version tracking (less overhead per op); learn() reads h from the ring
        with torch.inference_mode():
            step0 = self.state.step
            # the memories split the call at their chunk boundaries themselves (the streaming form is L = 1)
            h, self.state, self._act = self.net.encode(self.state, x, mask)
            keep = min(L, RING)  # a call longer than the ring (possible without CMS levels) keeps its last bars
            slots = self._slots(step0 + L - keep, keep)
            self.ring[:, slots] = h[:, L - keep :]
            # the CMS levels only step in learn(), so one readout serves the whole call
            pred = self.net.readout(theta, h)
            return pred if self.calib is None else self.calib.apply(pred, slots, keep)

    def _slots(self, first: int, n: int) -> slice | torch.Tensor:
        """Ring positions of bars first..first+n-1: a slice when they do not wrap (no index tensor to build)."""
        a = first % RING
        if a + n <= RING:
            return slice(a, a + n)
        return torch.arange(first, first + n, device=self.device) % RING

    def learn(self, steps: torch.Tensor, y: torch.Tensor, ymask: torch.Tensor) -> None:
        """No host sync on the way: the checks read ``steps`` and, when it lives on the host (as
        ``learner.stream`` builds it), ``ymask``; a window with no realised target adds exact zeros."""
        assert self.state is not None, "call reset() first"
        cms = self.cfg.learn_cms and bool(self.cfg.cms_periods)
        if (cms or self.calib is not None) and steps.shape[0]:
            steps = steps.cpu()  # bar indices live on the host
            if self.state.step - int(steps.min()) > RING:
                raise ValueError("targets older than the ring buffer")
            if ymask.device.type == "cpu":  # only the bars with a realised target (live: 2 of the 25 in the window)
                rows = ymask.any(2).any(0).nonzero()[:, 0]
                if rows.shape[0] < steps.shape[0]:
                    steps, y, ymask = steps[rows], y[:, rows], ymask[:, rows]
            if steps.shape[0]:
                index = self._ring_index(steps)
                y, ymask = y.to(self.device, non_blocking=True), ymask.to(self.device, non_blocking=True)
                if self.calib is not None:
                    self.calib.update(index, y, ymask)
                if cms:  # (B,n,d) CMS inputs of the forecast bars
                    self.net.cms_accumulate(self.state.cms, self.ring[:, index], y, ymask, self._levels(), self._loss_w)
        for i in self.net.cms_apply_due(self.state.cms, self.state.step):
            if self._theta is not None:  # a level stepped: its weights are rebuilt, the others' kept
                self._theta[i] = self.net.cms.level_weights(i, self.state.cms[i])
        if self.calib is not None:  # the return calibration refreshes on the clock too
            self.calib.tick(self.state.step)

    def _ring_index(self, steps: torch.Tensor) -> slice | torch.Tensor:
        """Where bars ``steps`` (host tensor) sit in the ring: a slice for consecutive bars that do not wrap."""
        first, n = int(steps[0]), steps.shape[0]
        if int(steps[-1]) - first == n - 1 and (n < 3 or bool((steps.diff() == 1).all())):
            return self._slots(first, n)
        return steps.to(self.device, non_blocking=True) % RING

    def _levels(self) -> list[dict[str, torch.Tensor]]:
        """The CMS levels' weights theta_0 + delta (B, ...), each level's built once per step of it, not once per
        call."""
        if self._theta is None:
            self._theta = self.net.cms.weights(self.state.cms)
        return self._theta

    def activity(self) -> dict[str, torch.Tensor]:
        act = self._act.summary() if self._act is not None else {}
        if self.state is not None:
            for i, lvl in enumerate(self.state.cms):
                act[f"cms_l{i}_update_norm"] = lvl.last_update_norm
        if self.calib is not None:  # the return calibration's multiples, shared by every stream
            c = self.calib.c
            act["ret_calib_1h"], act["ret_calib_24h"] = (c[i].expand(self.ring.shape[0]) for i in range(2))
        return act

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        st = self.state
        return {
            "format": "continuum.hope/1",
            "config": self.cfg.to_dict(),
            "meta_checksum": self.net.meta_checksum(),
            "slow": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
            "step": st.step,
            "conv": st.titans.conv.detach().cpu().clone(),
            "mems": {  # one entry per memory, as before the packed layout (unpack_memories)
                n: {k: t.detach().cpu().clone() for k, t in m.tensors().items()}
                for n, m in unpack_memories(st.titans.mems).items()
            },
            "cms": [
                {
                    "delta": {k: t.detach().cpu().clone() for k, t in lvl.delta.items()},
                    "acc": {k: t.detach().cpu().clone() for k, t in lvl.acc.items()},
                    "opt": {k: t.detach().cpu().clone() for k, t in lvl.opt.items()},
                    "last_update_norm": lvl.last_update_norm.detach().cpu().clone(),
                }
                for lvl in st.cms
            ],
            "ring": self.ring.detach().cpu().clone(),
            **({"ret_calib": self.calib.state_dict()} if self.calib is not None else {}),
        }

    def load_state_dict(self, state: dict, with_slow: bool = True) -> None:
        """Restore everything. ``with_slow=False`` keeps this model's meta-weights and refuses a
        fast state that was saved with different ones."""
        if with_slow:
            self.net.load_state_dict(state["slow"])
        elif state["meta_checksum"] != self.net.meta_checksum():
            raise MetaMismatchError(
                f"fast state was saved with meta-weights {state['meta_checksum']}, "
                f"these are {self.net.meta_checksum()}: restore the matching pre-trained checkpoint"
            )
        dev = self.device

        def to(t: torch.Tensor) -> torch.Tensor:
            return t.to(dev)

        from learner.hope.cms import LevelState

        mems = pack_memories({n: MemoryState(**{k: to(t) for k, t in m.items()}) for n, m in state["mems"].items()})
        step = int(state["step"])
        if step % self.cfg.chunk_mem == 0 and torch.equal(mems.W1, mems.R1) and torch.equal(mems.W2, mems.R2):
            # at a chunk boundary the running weights are the boundary weights, one tensor, as in the stream that
            # saved them (titans._chunk): the write reuses the factors' product there (memory.dgd_momentum_chunk),
            # so a restored stream takes the same path at the same bars and repeats it bit for bit
            mems = MemoryState(mems.W1, mems.W2, mems.W1, mems.W2, mems.S1, mems.S2)
        cms = [
            LevelState(
                {k: to(t) for k, t in c["delta"].items()},
                {k: to(t) for k, t in c["acc"].items()},
                {k: to(t) for k, t in c["opt"].items()},
                to(c["last_update_norm"]),
            )
            for c in state["cms"]
        ]
        self.state = HopeState(step, TitansState(to(state["conv"]), mems), cms)
        self.ring = to(state["ring"])
        self._act, self._theta = None, None
        # the return calibration: restored when saved, else it starts again from its prior (c = 0)
        self.calib = ReturnCalibration(self.cfg, self.ring.shape[0], RING, dev) if self.cfg.ret_calib else None
        if self.calib is not None and "ret_calib" in state:
            self.calib.load_state_dict(state["ret_calib"])
