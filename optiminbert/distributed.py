"""Data-parallel training on torch.distributed: `torchrun --nproc_per_node N ...`.

Every rank builds the same round-robin schedule (same seed), so every step has the same global
batch per task; each rank computes its slice of it. Gradients are all-reduced explicitly, not
by wrapping the model in DistributedDataParallel, because PCGrad must see each task's *global*
gradient before it projects (the per-rank gradients conflict differently from the sum): the
gradient strategies call ``all_reduce_gradients`` on what they would apply. Each rank's loss is
weighted by its share of the global batch and the gradients are summed, so N ranks take exactly
the step one process takes on the whole batch (up to float summation order).

A stop (Ctrl-C, SIGTERM: torchrun forwards it to every worker) is agreed on: each rank says at
every step whether it has been asked to stop, and all stop at the first step any rank was, so
the one state rank 0 saves is where every rank is (``agreed_signal``).

Outside torchrun (no WORLD_SIZE, or WORLD_SIZE=1) every function here is a no-op.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def init() -> None:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU), once."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        # Left to the interpreter's teardown, gloo's worker threads can still hold finished work
        # whose tensors need the GIL then, and the process aborts ("terminate called without an
        # active exception") after a run that succeeded; destroyed here, while Python is whole.
        atexit.register(_leave)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Only rank 0 writes models, metrics, plots and resume states."""
    return rank() == 0


def local_device() -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def shard(indices: torch.Tensor) -> tuple[torch.Tensor, float]:
    """This rank's slice of a global batch, and its share of the batch (the loss weight)."""
    if not active():
        return indices, 1.0
    mine = indices.tensor_split(world_size())[rank()]
    return mine, len(mine) / len(indices)


def flatten_grads(grads, params: list[torch.nn.Parameter], out: torch.Tensor | None = None) -> torch.Tensor:
    """Gradients as one fp32 vector in ``params`` order, a missing one as zeros (added into
    ``out`` if given: a micro-batch's into the step's): what one all-reduce, or PCGrad's dot
    products, work on."""
    if out is None:
        out = torch.zeros(sum(p.numel() for p in params), device=params[0].device)
    offset = 0
    for g, p in zip(grads, params):
        n = p.numel()
        if g is not None:
            out[offset : offset + n].add_(g.reshape(-1))
        offset += n
    return out


def set_grads(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    """Each parameter's ``.grad`` from its slice of a vector laid out as ``flatten_grads``'s."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks (a missing one counts as zero), in one
    flat all-reduce."""
    if not active():
        return
    flat = flatten_grads([p.grad for p in params], params)
    dist.all_reduce(flat)
    set_grads(params, flat)


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over the ranks, in place (PCGrad's per-task gradients)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def gather_rows(rows: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Every rank's {example index: output} merged, so each rank sees all predictions."""
    if not active():
        return rows
    parts: list[dict[int, torch.Tensor] | None] = [None] * world_size()
    dist.all_gather_object(parts, {i: t.cpu() for i, t in rows.items()})
    return {i: t for part in parts for i, t in part.items()}


def agreed_signal(signum: int | None) -> int | None:
    """The signal any rank has received (the largest number where several), the same on every
    rank; None where none has."""
    if not active():
        return signum
    flag = torch.tensor([signum or 0], device=local_device() if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def gather_objects(obj: object) -> list:
    """Every rank's ``obj``, in rank order (one process: ``[obj]``)."""
    if not active():
        return [obj]
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return parts


def barrier() -> None:
    if active():
        dist.barrier()


class _GatherRows(torch.autograd.Function):
    """Every rank's rows in rank order. Each rank's loss reads all of them, so the gradient that
    reaches a rank's own rows is the sum of every rank's gradient for them."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank()
        padded = local.new_zeros(max(sizes), *local.shape[1:])  # all_gather moves equal shapes
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_batch(value):
    """A batch's rows from every rank (tensors, tuples of them, None), differentiable: what an
    in-batch loss (MNRL's negatives) needs to see the global batch, as one process would."""
    if not active() or value is None:
        return value
    if isinstance(value, tuple):
        parts = [gather_batch(v) for v in value]
        return type(value)(*parts) if hasattr(value, "_fields") else tuple(parts)
    sizes = [int(n) for n in gather_objects(len(value))]
    return _GatherRows.apply(value.float(), sizes)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights (heads are seeded alike, but be certain)."""
    if active():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
