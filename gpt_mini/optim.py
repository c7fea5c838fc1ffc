"""The optimizer of a run: AdamW for every weight, or Muon for the matrices inside the blocks plus AdamW for the rest.

Muon (torch.optim.Muon) keeps a momentum of the gradient like SGD, then replaces each matrix's update by the nearest
orthogonal matrix (a few Newton-Schulz iterations): every direction of the matrix moves by about the same amount,
instead of a few large directions taking most of the step. On this course it reaches the same answers in far fewer
steps. It only suits 2-D weights inside the network; the embedding (also the output layer), the norm gains and
the biases stay with AdamW.
"""

import contextlib

import torch
import torch.optim._muon as _torch_muon

OPTIMIZERS = ("adamw", "muon")
_NS_DTYPE: dict = {}  # device type -> the dtype Muon orthogonalises in there (make_optimizer sets it)


def orthogonalize(grad: torch.Tensor, ns_coefficients: tuple, ns_steps: int, eps: float) -> torch.Tensor:
    """torch.optim.Muon's Newton-Schulz iterations, in the run's precision: X <- a*X + (b*A + c*A@A) @ X with
    A = X @ X.T pushes every singular value of X (scaled to norm 1) towards 1. torch runs them in bf16, which a
    CPU without bf16 units emulates about 20x slower than fp32: 13 s a step instead of 1.5 s on a 2-core AMD EPYC."""
    a, b, c = ns_coefficients
    x = grad.to(_NS_DTYPE.get(grad.device.type, torch.bfloat16))
    wide = grad.size(0) > grad.size(1)
    x = x.T if wide else x
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if wide else x


@contextlib.contextmanager
def orthogonalizing_in(dtype: torch.dtype, device_type: str = "cpu"):
    """Inside the block Muon orthogonalises in `dtype` on `device_type`; after it, in what it did before (the
    benchmark times both precisions without changing the run's choice)."""
    before = _NS_DTYPE.get(device_type)
    _NS_DTYPE[device_type] = dtype
    try:
        yield
    finally:
        if before is None:
            _NS_DTYPE.pop(device_type, None)
        else:
            _NS_DTYPE[device_type] = before


NS_COEFFICIENTS = (_torch_muon.DEFAULT_A, _torch_muon.DEFAULT_B, _torch_muon.DEFAULT_C)  # torch.optim.Muon's
NS_STEPS = _torch_muon.DEFAULT_NS_STEPS
NS_EPS = _torch_muon.EPS
TORCH_ORTHOGONALIZE = _torch_muon._zeropower_via_newtonschulz  # torch's own (bf16), the tests' reference
_torch_muon._zeropower_via_newtonschulz = orthogonalize  # the pinned torch (2.13) looks it up by this name


def _uses_muon(name: str, p: torch.nn.Parameter) -> bool:
    return p.dim() == 2 and name.startswith("blocks.")


class Optimizer:
    """One or two torch optimizers behind one interface: step, zero_grad, a learning-rate scale (the schedule) and
    one state_dict (so checkpoints and --resume keep both)."""

    def __init__(self, parts: dict):
        self.parts = parts
        for opt in parts.values():
            for group in opt.param_groups:
                group["base_lr"] = group["lr"]

    @property
    def param_groups(self) -> list:
        return [g for opt in self.parts.values() for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for opt in self.parts.values() for p, s in opt.state.items()}

    def scale_lr(self, factor: float):
        """The schedule: every group at factor x its own base learning rate."""
        for group in self.param_groups:
            group["lr"] = group["base_lr"] * factor

    def step(self):
        for opt in self.parts.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True):
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.parts.items()}

    def load_state_dict(self, state: dict):
        if "state" in state and "param_groups" in state:  # an AdamW-only state saved before Muon existed
            state = {"adamw": state}
        if set(state) != set(self.parts):
            raise ValueError(f"optimizer state has {sorted(state)}, this run uses {sorted(self.parts)}")
        for name, opt in self.parts.items():
            opt.load_state_dict(state[name])
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])


def make_optimizer(model: torch.nn.Module, training: dict, precision: str = "bf16") -> Optimizer:
    """training: the config's training section (optimizer, lr, muon_lr, weight_decay); precision: the run's
    (bf16 | fp32), which Muon's orthogonalisation follows on the model's device."""
    named = list(model.named_parameters())
    muon = training["optimizer"] == "muon"
    matrices = [p for n, p in named if muon and _uses_muon(n, p)]
    decay = [p for n, p in named if p.dim() >= 2 and not (muon and _uses_muon(n, p))]  # no decay on gains, biases
    other = [p for n, p in named if p.dim() < 2]
    parts = {"adamw": torch.optim.AdamW([{"params": decay, "weight_decay": training["weight_decay"]},
                                         {"params": other, "weight_decay": 0.0}],
                                        lr=training["lr"], betas=(0.9, 0.95))}
    if matrices:
        _NS_DTYPE[matrices[0].device.type] = torch.bfloat16 if precision == "bf16" else torch.float32
        parts["muon"] = torch.optim.Muon(matrices, lr=training["muon_lr"], weight_decay=training["weight_decay"])
    return Optimizer(parts)


class WeightAverage:
    """The final model of a run is the mean of its weights after each of its last steps (training.average_last,
    a share of max_steps; 0 = off). The last steps wander around the bottom of a valley; their mean sits nearer its
    middle and answers new wordings of a question more often than the last weights do."""

    def __init__(self, model: torch.nn.Module, max_steps: int, share: float):
        self.model, self.start = model, max_steps - int(round(max_steps * share))
        self.count, self.mean, self.raw = 0, None, None

    def update(self, step: int):
        """After optimizer step `step` (1-based): from step max_steps·(1 - share) on, add the weights to the mean."""
        if step < self.start:
            return
        weights = self.model.state_dict()
        self.count += 1
        if self.mean is None:
            self.mean = {k: v.detach().clone().float() for k, v in weights.items()}
            return
        for k, mean in self.mean.items():
            mean.add_(weights[k].float() - mean, alpha=1 / self.count)

    def apply(self):
        """Put the mean into the model (at the end of the run), keeping the last weights for a longer resumed run."""
        if self.mean is not None:
            self.raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.mean)

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "start": self.start, "raw": self.raw}

    def load_state_dict(self, state: dict):
        """A mean over another window (the run is resumed with another max_steps) is dropped: the weights join a
        new mean from this run's window on, or from the resumed step when that window has already begun."""
        if state.get("start", self.start) == self.start:
            self.count, self.mean = state["count"], state["mean"]
