"""Processes and parallelism: torchrun's environment, DDP or FSDP (``fully_shard``), and the
collective bits the trainer needs (rank-averaged logs, an agreed stop, full state dicts).

Under torchrun (``WORLD_SIZE`` > 1) the process group is NCCL on CUDA and gloo on the CPU.
DDP keeps a full replica per rank; FSDP (``settings.parallel: fsdp``) shards parameters,
gradients and optimizer state, each unit the stage names (decoder layers) on its own and then
the root, in bf16 with float32 gradient reduction on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from occvla_ros.errors import ConfigError
from training.settings import TrainingSettings


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup() -> Distributed:
    """torchrun sets WORLD_SIZE / RANK / LOCAL_RANK; otherwise one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world_size > 1:
        if cuda:
            torch.cuda.set_device(device)
        torch_dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = torch_dist.get_rank() if world_size > 1 else 0
    return Distributed(rank, world_size, device)


def shutdown(dist: Distributed) -> None:
    if dist.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(dist: Distributed) -> None:
    if dist.active:
        torch_dist.barrier()


def wrap(
    model: nn.Module, dist: Distributed, settings: TrainingSettings, units: list[nn.Module]
) -> nn.Module:
    """The module the training forward runs through (the model itself in one process)."""
    if settings.parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if not dist.active:
            raise ConfigError("parallel: fsdp needs several processes (run under torchrun)")
        policy = MixedPrecisionPolicy()
        if dist.device.type == "cuda" and settings.bf16:
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for unit in units:
            fully_shard(unit, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model  # fully_shard changes the module in place
    if dist.active:
        # Stages leave parts of the graph unused (e.g. the text-only path of a batch).
        return nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    return model


def is_sharded(settings: TrainingSettings) -> bool:
    return settings.parallel == "fsdp"


def mean_over_ranks(logs: dict[str, float], dist: Distributed) -> dict[str, float]:
    """Each named value averaged over the ranks (every rank must log the same names)."""
    if not dist.active or not logs:
        return logs
    names = sorted(logs)
    values = torch.tensor([float(logs[name]) for name in names], dtype=torch.float64)
    values = values.to(dist.device)
    torch_dist.all_reduce(values)
    return dict(zip(names, (values / dist.world_size).tolist(), strict=True))


def gather(value: object, dist: Distributed) -> list:
    """Every rank's ``value`` (picklable, small: RNG states, data positions), in rank order."""
    if not dist.active:
        return [value]
    values: list = [None] * dist.world_size
    torch_dist.all_gather_object(values, value)
    return values


def any_rank(flag: bool, dist: Distributed) -> bool:
    """True on every rank when it is True on one (a stop request seen by one process)."""
    if not dist.active:
        return flag
    value = torch.tensor([int(flag)], device=dist.device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return bool(value.item())


def full_model_state(
    model: nn.Module, dist: Distributed, settings: TrainingSettings
) -> dict[str, torch.Tensor]:
    """The model's full state dict on the CPU (on rank 0; gathered from the shards under FSDP)."""
    if is_sharded(settings):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


def optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, settings: TrainingSettings
) -> dict:
    if is_sharded(settings):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer, options=options)
    return optimizer.state_dict()


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, settings: TrainingSettings
) -> None:
    if is_sharded(settings):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_optimizer_state_dict(model, optimizer, state, options=options)
        return
    optimizer.load_state_dict(state)
