"""Data options through a run: data_options reach the loader and are stored; a known true density
gives the KL to the truth on every split (checked against log p_true + the loaded model's bound);
data redrawn every epoch are used epoch by epoch, and a resumed run stays bitwise identical."""

import json
import math

import pytest
import torch

import lowerbound
from lowerbound.cli import main
from lowerbound.data.base import Dataset
from lowerbound.models.independent import Independent, IndependentConfig
from lowerbound.train import run, runtime
from lowerbound.train.config import read_yaml, resolve
from lowerbound.train.loop import Trainer, batch_indices


def test_data_options_merge_from_yaml_and_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: toy2d:rings\ndata_options:\n  n_train: 500\n  seed: 2\n")
    cfg = resolve({"family": "independent"}, read_yaml(path), sets=["data_options.n_test=300"])
    assert cfg.data_options == {"n_train": 500, "seed": 2, "n_test": 300}
    assert cfg.to_dict()["data_options"] == cfg.data_options
    data = run.load_dataset(cfg)
    assert (len(data.train), len(data.test)) == (500, 300)
    with pytest.raises(lowerbound.UserError, match="data_options must be a mapping"):
        resolve({"family": "independent", "data_options": 3})
    # the shipped MNIST config carries its binarization (loading it needs the files: not done here)
    vae = resolve({"family": "vae"}, read_yaml("configs/vae_binarized_mnist.yaml"))
    assert vae.data == "mnist" and vae.data_options["binarize"] == "dynamic"


def test_known_density_run_reports_the_kl_to_the_truth(tmp_path, capsys):
    d = tmp_path / "toy"
    argv = ["train", "independent", "--data", "toy2d:8gaussians", "--steps", "20", "--lr", "0.1",
            "--eval-every", "10", "--set", "num_samples=0", "--set", "data_options.n_train=400",
            "--set", "data_options.n_test=300", "--run-dir", str(d), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert json.loads((d / "config.json").read_text())["data_options"] == {"n_train": 400, "n_test": 300}
    # reference: the paired mean of log p_true(x) + nll(x) over the test split, from the loaded model
    model = lowerbound.load(d)
    data = lowerbound.data.load("toy2d:8gaussians", n_train=400, n_test=300)
    with torch.no_grad():
        paired = data.truth.log_prob(data.test).double() + model.bound(data.test).nats.double()
    assert out["n"] == 300 and out["split"] == "test"
    assert out["kl_to_truth"]["value"] == pytest.approx(paired.mean().item(), rel=1e-6, abs=1e-9)
    assert out["kl_to_truth"]["stderr"] == pytest.approx(paired.std().item() / math.sqrt(300), rel=1e-6)
    assert all(out["splits"][s]["kl_to_truth"] is not None for s in ("train", "valid", "test"))
    assert [out["splits"][s]["n"] for s in ("train", "valid")] == [300, 40]
    assert "KL to truth (nats)" in (d / "report.md").read_text()
    # eval rebuilds the same data set from the stored data_options
    assert main(["eval", str(d), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == 300 and ev["kl_to_truth"]["value"] == pytest.approx(out["kl_to_truth"]["value"])


class _Recording(Independent):
    """Independent model that keeps the batches its loss sees."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def loss(self, x, *, generator=None):
        self.seen.append(x.clone())
        return super().loss(x, generator=generator)


def _redraw(epoch: int) -> torch.Tensor:
    """A train split redrawn per epoch (a pure function of the epoch, as dynamic binarization)."""
    g = torch.Generator().manual_seed(1000 + epoch)
    return torch.randint(0, 5, (64, 1, 2, 3), generator=g)


def _trainer(steps, resample=_redraw):
    cfg = resolve(dict(family="independent", steps=steps, batch_size=16, lr=0.05, eval_every=4,
                       log_every=4, checkpoint_every=4, patience=0, seed=3))
    torch.manual_seed(0)  # the same initial weights (a resumed state overwrites them anyway)
    model = _Recording(IndependentConfig(init_scale=0.1), 5, (1, 2, 3))
    return Trainer(cfg, runtime.setup("cpu"), model, _redraw(0), _redraw(99)[:16], progress=False,
                   resample=resample)


def test_each_epoch_trains_on_its_redraw_and_resume_is_bitwise_identical():
    straight = _trainer(12)
    straight.run()
    for s, x in enumerate(straight.model.seen):  # 4 batches per epoch: epochs 0, 1, 2
        assert torch.equal(x, _redraw(s // 4)[batch_indices(64, 16, 3, s)])
    first = _trainer(6)
    first.run()
    second = _trainer(12)
    second.state.load_state_dict(first.state.state_dict())
    second.run()
    assert torch.equal(straight.model.logits, second.model.logits)
    assert all(torch.equal(a, b) for a, b in zip(straight.model.seen[6:], second.model.seen))
    fixed = _trainer(8, resample=None)  # without resample every epoch reuses epoch 0's draw
    fixed.run()
    assert torch.equal(fixed.model.seen[4], _redraw(0)[batch_indices(64, 16, 3, 4)])


def test_train_for_epoch_keeps_the_runs_split():
    draws = {e: torch.randint(0, 2, (50, 1, 2, 2), generator=torch.Generator().manual_seed(e))
             for e in range(3)}
    data = Dataset("redrawn", draws[0], draws[0][:5], 2, (1, 2, 2), resample=draws.__getitem__)
    cfg = resolve({"family": "independent", "valid_fraction": 0.2, "seed": 4})
    train_x, valid_x = run.split_train_valid(data.train, cfg.valid_fraction, cfg.seed)
    redraw = run.train_for_epoch(data, cfg)
    assert torch.equal(redraw(0), train_x)
    expected, _ = run.split_train_valid(draws[2], cfg.valid_fraction, cfg.seed)
    assert torch.equal(redraw(2), expected) and len(redraw(2)) == 40
    fixed = Dataset("fixed", draws[0], draws[0][:5], 2, (1, 2, 2))
    assert run.train_for_epoch(fixed, cfg) is None
