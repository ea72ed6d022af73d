"""DDP support for runs started by ``torchrun`` (no home-made launcher).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we join the process group (gloo on CPU, nccl on CUDA), wrap the model
in DistributedDataParallel and let only rank 0 write logs and checkpoints. Without those variables everything is a
no-op single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from caloforge.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def env_dist_info() -> DistInfo:
    """Rank/world from torchrun's environment (single process when unset)."""
    try:
        return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                        int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK: expected integers ({exc})") from None


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; returns this process's DistInfo."""
    info = env_dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


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


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if any rank raised the flag (so all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_across(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
