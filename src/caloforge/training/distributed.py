"""DDP support for runs started by ``torchrun`` (no home-made launcher).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we join the process group, wrap the model in
DistributedDataParallel and let only rank 0 write logs and checkpoints. Without those variables everything is a
no-op single process; with them (even a world of one) every collective runs, so one GPU exercises the real path.

The small collectives of the loop (stop flag, logged loss) run on the training device: nccl has no CPU tensors,
and a group built for CUDA alone refuses them ("No backend type associated with device type cpu"). On CUDA the
group is ``cpu:gloo,cuda:nccl`` as well, so a CPU tensor reduced by other code still finds a backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from caloforge.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (WORLD_SIZE set): DDP and collectives on, even for a world of one
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where this rank trains

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.launched or self.world > 1


def env_dist_info() -> DistInfo:
    """Rank/world from torchrun's environment (single process when unset)."""
    try:
        return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                        int(os.environ.get("LOCAL_RANK", "0")), "WORLD_SIZE" in os.environ)
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK: expected integers ({exc})") from None


def backend_for(device: torch.device) -> str:
    """gloo on CPU; on CUDA nccl for the device's tensors and gloo for any CPU tensor."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; returns this process's DistInfo (with its device)."""
    info = env_dist_info()
    dev = local_device(device, info)
    if info.enabled and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            dist.init_process_group(backend=backend_for(dev), device_id=dev)
        else:
            dist.init_process_group(backend=backend_for(dev))
    return DistInfo(info.rank, info.world, info.local_rank, info.launched, dev)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """One GPU per local rank; CPU stays CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def per_rank_batch(global_batch: int, info: DistInfo, shards_per_rank: int = 1) -> int:
    """Showers per rank and step; the global batch must split evenly over ranks and accumulation shards."""
    parts = info.world * shards_per_rank
    if global_batch % parts:
        raise ConfigError(
            f"train.batch_size: expected a multiple of world size x grad_accum = {parts}, found {global_batch}"
        )
    return global_batch // info.world


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _all_reduce(value: float, op, info: DistInfo) -> float:
    """One float reduced over ranks, on the training device (float32 there: nccl on every GPU supports it)."""
    dtype = torch.float64 if info.device.type == "cpu" else torch.float32
    t = torch.tensor([float(value)], dtype=dtype, device=info.device)
    dist.all_reduce(t, op=op)
    return float(t.item())


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if any rank raised the flag (so all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    return _all_reduce(1.0 if flag else 0.0, dist.ReduceOp.MAX, info) > 0


def mean_across(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    return _all_reduce(value, dist.ReduceOp.SUM, info) / info.world


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
