"""learned-aug (methods.md §7): the policy samples what it says, the meta-gradient is the right one, and it learns.

The mechanism tests run on the functions the method uses (`aug_policy`), on small networks in
float64 where a tolerance is stated; the method tests check what the update does to the model,
the policy and the checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from typer.testing import CliRunner

from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.train import ValidationSet
from robench.cli import app
from robench.errors import ConfigError, RunStateError
from robench.methods import Batch, get_method
from robench.methods.aug_policy import AugmentationPolicy, conditional_gumbel_softmax, policy_meta_step, weight_gradient
from robench.methods.learned_aug import LearnedAugmentation
from robench.methods.op_table import GROUP_OPTIONS, PRESET_PROBABILITIES
from tests.test_methods_smoke import CROP, P, batch_for

SIZES = [len(options) + 1 for _, options in GROUP_OPTIONS]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["nnunet", "deepmedic"])
def test_presets_give_their_probability_of_augmenting_each_group(preset):
    policy = AugmentationPolicy(SIZES, PRESET_PROBABILITIES[preset])
    for probs, p in zip((q.detach() for q in policy.probabilities()), PRESET_PROBABILITIES[preset]):
        assert float(1 - probs[0]) == pytest.approx(p, abs=1e-6)
        assert torch.allclose(probs[1:], probs[1:].mean().expand_as(probs[1:]))  # options equally likely
    uniform = AugmentationPolicy(SIZES, None)
    assert all(torch.allclose(q, torch.full_like(q, 1 / len(q))) for q in uniform.probabilities())


def test_sampled_options_follow_the_policy_probabilities():
    """Gumbel-max draws: per group, a chi-square test of 20 000 draws against softmax(logits)."""
    policy = AugmentationPolicy(SIZES, PRESET_PROBABILITIES["nnunet"])
    with torch.no_grad():
        policy.logits.add_(torch.randn(len(policy.logits), generator=gen(3)))  # not a preset's symmetry
    n = 20_000
    choices = policy.sample(n, gen(1))
    for g, probs in enumerate(policy.probabilities()):
        counts = np.bincount(choices[:, g].numpy(), minlength=len(probs))
        expected = probs.detach().double().numpy()
        expected = expected / expected.sum() * n
        assert stats.chisquare(counts, expected).pvalue > 1e-3, (g, counts, expected)


def test_conditional_gumbel_softmax_keeps_the_chosen_argmax_and_the_straight_through_value_is_one():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0], requires_grad=True)
    choice = torch.tensor([0, 1, 2, 3] * 250)
    soft = conditional_gumbel_softmax(logits, choice, 1.0, gen(0))
    assert torch.equal(soft.argmax(1), choice)  # even for the option of probability 0.6 %
    policy = AugmentationPolicy([4, 3])
    st = policy.straight_through(torch.tensor([[3, 0], [1, 2]]), gen(0))
    assert torch.equal(st, torch.ones_like(st))
    grad, = torch.autograd.grad(st.sum(), policy.logits)
    assert grad.abs().sum() > 0


# ---- the meta-gradient --------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def tiny_losses(net, x, y, vx, vy):
    def sample_loss(theta):
        return F.cross_entropy(functional_call(net, theta, (x,)), y, reduction="none").mean((1, 2))

    def val_loss(theta):
        return F.cross_entropy(functional_call(net, theta, (vx,)), vy)

    return sample_loss, val_loss


def test_finite_difference_weight_gradient_matches_autograd_through_the_look_ahead():
    """∂L_val(θ − α∇θ L_tr(θ, w))/∂w by double backward vs the finite-difference product, float64:
    agreement to 1e-4 relative (the central difference's O(R²) error at r = 0.01)."""
    torch.manual_seed(0)
    net = Tiny().double()
    x, vx = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    y, vy = (x[:, 0] > 0).long(), (vx[:, 0] > 0.3).long()
    params = dict(net.named_parameters())
    sample_loss, val_loss = tiny_losses(net, x, y, vx, vy)
    alpha = 0.5

    fd, _ = weight_gradient(sample_loss, val_loss, params, alpha=alpha)

    w = torch.ones(6, dtype=torch.float64, requires_grad=True)
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    train = (w * sample_loss(theta)).mean()
    grads = torch.autograd.grad(train, list(theta.values()), create_graph=True)
    ahead = {k: theta[k] - alpha * g for k, g in zip(theta, grads)}
    exact, = torch.autograd.grad(val_loss(ahead), w)

    assert exact.abs().max() > 1e-6  # a real signal, not two zeros
    torch.testing.assert_close(fd, exact, rtol=1e-4, atol=1e-9)


def test_centring_and_count_normalisation_reach_the_logits_as_the_spec_says(monkeypatch):
    """∇P = Σ_k (g̃_k / n_k) ∂ST_k/∂P, with g̃ centred per foreground/background group and n_k the count of
    sample k's option among its group's samples — checked against the formula written out."""
    import robench.methods.aug_policy as aug_policy

    g = torch.tensor([0.3, -0.1, 0.7, 0.2, -0.4])
    monkeypatch.setattr(aug_policy, "weight_gradient", lambda *a, **k: (g.clone(), {}))  # a known ∂L_val/∂w
    policy = AugmentationPolicy([3])
    choices = torch.tensor([[0], [0], [1], [2], [1]])
    fg = torch.tensor([True, True, True, False, False])
    policy_meta_step([policy], torch.zeros(5, dtype=torch.long), choices, fg, None, None, {}, alpha=1.0, generator=gen(0))

    centred = torch.tensor([0.3 - 0.3, -0.1 - 0.3, 0.7 - 0.3, 0.2 + 0.1, -0.4 + 0.1])
    counts = torch.tensor([2.0, 2.0, 1.0, 1.0, 1.0])  # option 0 twice among the foreground samples
    twin = AugmentationPolicy([3])  # the same conditional Gumbel draws give the same soft samples
    expected, = torch.autograd.grad((centred / counts * twin.straight_through(choices, gen(0))[:, 0]).sum(), twin.logits)
    torch.testing.assert_close(policy.logits.grad, expected)


def test_a_destructive_op_planted_in_the_table_loses_probability():
    """A toy task (segment a bright bar on the left) with two op groups: one that mirrors the image but
    not its label (destroys the task), one that adds faint noise (harmless). 300 meta steps with SGD
    on the network: the destructive op falls well below its initial 0.5; the harmless one does not."""
    torch.manual_seed(0)
    g = gen(0)
    net = Tiny()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    policy = AugmentationPolicy([2, 2], [0.5, 0.5])
    policy_opt = torch.optim.Adam(policy.parameters(), lr=0.02)

    def toy(n):
        x = 0.1 * torch.rand(n, 1, 12, 12, generator=g)
        rows = torch.randint(0, 8, (n,), generator=g)
        y = torch.zeros(n, 12, 12, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, 0, r : r + 4, 1:5] += 1
            y[i, r : r + 4, 1:5] = 1
        return x, y

    vx, vy = toy(16)
    for _ in range(300):
        x, y = toy(8)
        choices = policy.sample(8, g)
        x_aug = torch.where((choices[:, 0] == 1)[:, None, None, None], x.flip(-1), x)
        x_aug = x_aug + 0.02 * (choices[:, 1] == 1)[:, None, None, None] * torch.randn(x.shape, generator=g)
        sample_loss, val_loss = tiny_losses(net, x_aug, y, vx, vy)
        policy_opt.zero_grad()
        policy_meta_step([policy], torch.zeros(8, dtype=torch.long), choices, torch.ones(8, dtype=torch.bool),
                         sample_loss, val_loss, dict(net.named_parameters()), alpha=0.5, generator=g)
        policy_opt.step()
        opt.zero_grad()
        F.cross_entropy(net(x_aug), y).backward()
        opt.step()
    destroy, harmless = (float(p[1].detach()) for p in policy.probabilities())
    assert destroy < 0.3, destroy
    assert harmless > destroy + 0.15, (destroy, harmless)


# ---- the method ---------------------------------------------------------------------------------


def make(seed=0, **hp):
    cls = get_method("learned-aug")
    method = cls({**cls.hparams, **hp}, num_classes=4, device=torch.device("cpu"), seed=seed)
    val_batch = batch_for(method, seed=99, n=3)  # any slices with foreground serve as validation here
    method._drawn = None
    method.begin_training(None, ValidationSet(val_batch.images[3:], val_batch.labels[3:]))
    return method


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_the_look_ahead_leaves_the_model_and_its_bn_statistics_untouched_and_moves_the_policy():
    method = make()
    batch = batch_for(method)
    net_before, policy_before = state(method.net), state(method.policies)
    method.meta_step(batch.images[:2], batch.labels[:2], method._drawn)
    for k, v in method.net.state_dict().items():
        assert torch.equal(v, net_before[k]), k  # weights and BN running mean/var/count
    assert not torch.equal(method.policies[0].logits, policy_before["0.logits"])


def test_only_the_meta_step_changes_the_policy():
    method = make(augupdate=2)
    assert all(p.data_ptr() != method.policies[0].logits.data_ptr() for opt in method._optimisers.values()
               for group in opt.param_groups for p in group["params"])
    before = method.policies[0].logits.detach().clone()
    method.update(batch_for(method, seed=0))  # update 0: meta step, then the segmentation step
    after_meta = method.policies[0].logits.detach().clone()
    method.update(batch_for(method, seed=1))  # update 1: the segmentation step only
    assert not torch.equal(after_meta, before)
    assert torch.equal(method.policies[0].logits.detach(), after_meta)
    assert method.updates == 2


def test_class_specific_policies_learn_only_from_their_own_slices():
    method = make(class_specific=True)
    labels = torch.zeros(2, P, P, dtype=torch.int64)  # background-only slices: the foreground policy draws none
    images = torch.rand(2, 1, P, P, generator=gen(0))
    x, y = method.augment(images, labels, crop=CROP, generator=gen(0))
    fg_before, bg_before = (p.logits.detach().clone() for p in (method.policies[1], method.policies[0]))
    method.update(Batch(torch.cat([x, x]), torch.cat([y, y]), 2))
    assert torch.equal(method.policies[1].logits.detach(), fg_before)
    assert not torch.equal(method.policies[0].logits.detach(), bg_before)


def test_update_refuses_a_batch_its_augment_did_not_draw_and_bad_hparams_fail_early():
    method = make()
    batch = batch_for(method)
    method._drawn = None
    with pytest.raises(RunStateError, match="augment"):
        method.update(batch)
    for key, value in [("init", "nnunet3"), ("augupdate", 0), ("meta_loss", "mse"), ("policy_lr", 0.0)]:
        with pytest.raises(ConfigError, match=key):
            make(**{key: value})


def smoke_request(out, resume=False):
    return RunRequest(suite="cardiac-synth", method="learned-aug", budget="smoke", out=out, progress=False,
                      resume=resume, hparams={"record_every": "3"})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return execute(smoke_request(tmp_path_factory.mktemp("learned-aug")), log=lambda m: None)


def test_smoke_run_writes_the_policy_trajectory(finished):
    policy = pd.read_parquet(finished.folder.path / "policy.parquet")
    assert sorted(policy["update"].unique()) == [0, 3, 6, 9, 12]
    per_update = policy.groupby(["update", "group"])["probability"].sum()
    assert np.allclose(per_update, 1.0, atol=1e-5)
    start, end = (policy[policy["update"] == u].set_index(["group", "option"])["probability"] for u in (0, 12))
    assert (start - end).abs().max() > 1e-4  # the smoke budget's 12 meta steps moved it


def test_resume_continues_the_policy_exactly(finished, tmp_path, monkeypatch):
    original = LearnedAugmentation.update
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 9:  # after the checkpoint at 6
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(LearnedAugmentation, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute(smoke_request(tmp_path), log=lambda m: None)
    monkeypatch.setattr(LearnedAugmentation, "update", original)
    resumed = execute(smoke_request(tmp_path, resume=True), log=lambda m: None)
    pd.testing.assert_frame_equal(pd.read_parquet(resumed.folder.path / "policy.parquet"),
                                  pd.read_parquet(finished.folder.path / "policy.parquet"))
    cols = ["test_set", "case_id", "mode", "class", "dice"]
    pd.testing.assert_frame_equal(resumed.records[cols], finished.records[cols])


def test_plot_policy_draws_the_trajectory_and_tabulates_p_augment(finished, tmp_path):
    out = CliRunner().invoke(app, ["plot", "policy", str(finished.folder.path), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    for stem in ("policy-trajectory-all", "policy-initial-final"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 10_000
    summary = pd.read_csv(tmp_path / "policy.csv")
    assert list(summary["group"]) == [name for name, _ in GROUP_OPTIONS]
    np.testing.assert_allclose(summary["p_augment_initial"], PRESET_PROBABILITIES["deepmedic"], atol=1e-4)
    assert set(summary.loc[summary["geometric"], "group"]) == {"scale", "rotate", "flip_h", "flip_v"}


def test_plot_policy_refuses_a_run_without_a_policy(tmp_path):
    out = CliRunner().invoke(app, ["plot", "policy", str(tmp_path), "--out", str(tmp_path / "figs")])
    assert out.exit_code != 0 and "only learned-aug runs record a policy" in out.output
    assert "Traceback" not in out.output
