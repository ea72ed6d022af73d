"""DDP: `torchrun --nproc_per_node 2` on CPU (gloo) computes the same updates as one process with the same global
batch split into the same two noise shards (grad_accum=2), up to float summation order."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_trainer import small_recipe_file, structured_file
from test_two_stage import SMALL_2S

from caloforge.training.checkpoint import load_checkpoint

STEPS = 6


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "CALOFORGE_PROGRESS": "0"}


def _train_args(recipe, data, out, *overrides):
    return ["-m", "caloforge.cli.main", "train", "--recipe", str(recipe), "--data", str(data), "--out", str(out),
            "--steps", str(STEPS), "--device", "cpu", *overrides]


def _max_abs_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=64)
    recipe = small_recipe_file(tmp_path, batch_size=32, ckpt_every=STEPS, log_every=1)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *_train_args(recipe, data, tmp_path / "ddp")], env=_env(), capture_output=True, text=True, check=False,
                         timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, *_train_args(recipe, data, tmp_path / "one", "train.grad_accum=2")],
                            env=_env(), capture_output=True, text=True, check=False, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    unsharded = subprocess.run([sys.executable, *_train_args(recipe, data, tmp_path / "unsharded")],
                               env=_env(), capture_output=True, text=True, check=False, timeout=600)
    assert unsharded.returncode == 0, unsharded.stderr[-3000:]

    a, b, c = (load_checkpoint(tmp_path / d) for d in ("ddp", "one", "unsharded"))
    assert a["step"] == b["step"] == STEPS
    ddp_vs_one = _max_abs_diff(a["model"], b["model"])
    noise_effect = _max_abs_diff(b["model"], c["model"])  # same init and batches, noise drawn as one shard
    assert ddp_vs_one < 1e-4, ddp_vs_one
    assert noise_effect > 100 * max(ddp_vs_one, 1e-7), (noise_effect, ddp_vs_one)
    # only rank 0 wrote: one metrics line per step, one config, one set of checkpoints
    assert (tmp_path / "ddp" / "metrics.jsonl").read_text().count("\n") == STEPS


@pytest.mark.slow
def test_two_stage_ddp_matches_one_process(tmp_path):
    """The two-stage net computes both losses in one forward, so DDP syncs the layer MLP and the DiT together."""
    import yaml

    from caloforge.training.recipe_io import load_recipe

    data = structured_file(tmp_path / "d.h5", n=64)
    recipe = load_recipe("tiny-fm-2s", [*SMALL_2S, "train.batch_size=32", f"train.ckpt_every={STEPS}",
                                        "train.deterministic=false"]).to_dict()
    path = tmp_path / "two_stage.yaml"
    path.write_text(yaml.safe_dump(recipe))
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *_train_args(path, data, tmp_path / "ddp")], env=_env(), capture_output=True, text=True,
                         check=False, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, *_train_args(path, data, tmp_path / "one", "train.grad_accum=2")],
                            env=_env(), capture_output=True, text=True, check=False, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = (load_checkpoint(tmp_path / d)["model"] for d in ("ddp", "one"))
    assert any(k.startswith("layer.") for k in a)
    assert _max_abs_diff(a, b) < 1e-4, _max_abs_diff(a, b)


# ---- collectives on the training device ---------------------------------------------------------------------------
class _Reduced(Exception):
    """Raised by the fake backend once it has accepted a tensor (a meta tensor holds no value to read back)."""


def test_collectives_put_their_tensors_on_the_training_device(monkeypatch):
    """A backend that only serves the model's device type (nccl serves CUDA only) rejects CPU tensors; the stop flag
    and the logged loss must be reduced on the device the model trains on (here a stand-in 'meta' device)."""
    import torch
    import torch.distributed as dist

    from caloforge.training import distributed

    info = distributed.DistInfo(rank=0, world=2, local_rank=0, launched=True, device=torch.device("meta"))

    def backend_for_meta_only(t, op=None, group=None, async_op=False):
        if t.device.type != "meta":
            raise RuntimeError(f"No backend type associated with device type {t.device.type}")
        raise _Reduced(t.device.type)

    monkeypatch.setattr(dist, "all_reduce", backend_for_meta_only)
    for call in (lambda: distributed.any_flag(True, info), lambda: distributed.mean_across(1.5, info)):
        with pytest.raises(_Reduced):
            call()


def test_backend_serves_cpu_tensors_on_gpu_runs_too():
    import torch

    from caloforge.training.distributed import backend_for

    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "cpu:gloo,cuda:nccl"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_world_of_one_under_torchrun_runs_ddp_and_every_collective_on_the_model_device(tmp_path, monkeypatch):
    """WORLD_SIZE=1 (as `torchrun --nproc_per_node 1` sets it) joins a real process group, wraps the model in DDP and
    runs the loop's collectives; each reduced tensor sits on the device of the model's parameters."""
    import torch
    import torch.distributed as dist

    from caloforge.training import trainer

    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(k, v)
    seen, wrapped = [], []
    real_all_reduce, real_wrap = dist.all_reduce, trainer.distributed.wrap

    def recording_all_reduce(t, *a, **kw):
        seen.append(t.device)
        return real_all_reduce(t, *a, **kw)

    def recording_wrap(model, info, device):
        net = real_wrap(model, info, device)
        wrapped.append((type(net).__name__, next(model.parameters()).device))
        return net

    monkeypatch.setattr(dist, "all_reduce", recording_all_reduce)
    monkeypatch.setattr(trainer.distributed, "wrap", recording_wrap)
    data = structured_file(tmp_path / "d.h5", n=32)
    recipe = small_recipe_file(tmp_path, batch_size=16, ckpt_every=3, log_every=1)
    res = trainer.train(str(recipe), data, tmp_path / "run", steps=3, device="cpu")
    assert res.completed and not dist.is_initialized()
    assert wrapped == [("DistributedDataParallel", torch.device("cpu"))]
    assert len(seen) >= 6 and set(seen) == {wrapped[0][1]}  # stop flag + loss per step, on the model's device
