"""The standard method and the dual network: shapes, losses, the STN mode, and that training fits."""

from __future__ import annotations

import functools

import torch

from tests.toys import build_method, toy_batch
from robench.methods import Batch, get_method
from robench.methods.nets import DualNet


make = functools.partial(build_method, "standard")


def test_network_shapes_follow_the_paper():
    net = DualNet()
    x = torch.rand(2, 1, 192, 192)
    z_i, z_s = net.encode(x)
    assert z_i.shape == z_s.shape == (2, 128, 12, 12)
    assert (z_i >= 0).all() and (z_s >= 0).all()  # ReLU heads
    rec = net.image_decoder(z_i)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1  # sigmoid
    assert net.segment(x).shape == (2, 4, 192, 192)
    assert net.refine(net.segment(x)).shape == (2, 4, 192, 192)


def test_update_reports_the_four_standard_losses_and_overfits_a_batch():
    method = make(lr=1e-3)
    batch = toy_batch()
    first = method.update(batch)
    assert set(first) == {"seg", "rec", "stn_gt", "stn_pred", "total"}
    for _ in range(40):
        last = method.update(batch)
    assert last["seg"] < 0.5 * first["seg"]
    assert last["stn_gt"] < first["stn_gt"]
    method.eval()
    with torch.no_grad():
        pred = method.predict(batch.images).argmax(1)
    assert (pred == batch.labels).float().mean() > 0.9


def test_prediction_modes_differ_and_unknown_modes_fail():
    method = make()
    x = toy_batch().images
    method.eval()
    with torch.no_grad():
        ftn, refined = method.predict(x, "ftn"), method.predict(x, "ftn+stn")
    assert not torch.allclose(ftn, refined)
    try:
        method.predict(x, "tta")
    except Exception as exc:
        assert "no prediction mode 'tta'" in str(exc)
    else:
        raise AssertionError("unknown mode accepted")


def test_same_seed_same_updates():
    a, b = make(seed=3), make(seed=3)
    batch = toy_batch()
    assert a.update(batch) == b.update(batch)
    c = make(seed=4)
    assert c.update(batch) != a.update(batch)


def test_state_dict_round_trip_restores_the_noise_stream():
    a = make(seed=1)
    batch = toy_batch()
    a.update(batch)
    state = a.state_dict()
    b = make(seed=99)
    b.load_state_dict(state)
    assert a.update(batch) == b.update(batch)
