"""Weights with equal content are held once, across clients and models."""

from __future__ import annotations

import copy

import torch

from reefd.clients.client import Client
from reefd.clients.lower import lower
from reefd.demo_models import mlp, small_cnn


def _weights(client: Client) -> dict:
    return client.status()["weights"]


def test_two_clients_with_the_same_weights_share_one_copy(daemon, sock_path):
    model, inputs = small_cnn()
    low = lower(model, inputs)
    one = low.weight_bytes
    with Client(sock_path) as a, Client(sock_path) as b:
        ma = a.register(low.graph, low.weights)
        assert _weights(a)["unique_bytes"] == one
        mb = b.register(low.graph, low.weights, priority="rt")
        stats = _weights(a)
        assert stats["unique_bytes"] == one
        assert stats["referenced_bytes"] == 2 * one
        assert stats["shared_hits"] == len(low.graph.weights)
        want = model(*inputs)
        for client, mid in ((a, ma), (b, mb)):
            got = client.infer(mid, inputs)[0]
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        a.unregister(ma)
        assert _weights(b)["unique_bytes"] == one
        assert _weights(b)["referenced_bytes"] == one
        got = b.infer(mb, inputs)[0]  # the shared copy outlives the first model
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        b.unregister(mb)
        assert _weights(b)["unique_bytes"] == 0


def test_different_weights_are_not_shared(daemon, sock_path):
    model, inputs = mlp()
    low = lower(model, inputs)
    model = copy.deepcopy(model)  # lowered weights alias the module's parameters
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    changed = lower(model, inputs)
    with Client(sock_path) as client:
        m1 = client.register(low.graph, low.weights)
        m2 = client.register(changed.graph, changed.weights)
        stats = _weights(client)
        assert stats["unique_bytes"] == low.weight_bytes + changed.weight_bytes
        assert stats["shared_hits"] == 0
        out1 = client.infer(m1, inputs)[0]
        out2 = client.infer(m2, inputs)[0]
        torch.testing.assert_close(out2, model(*inputs), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out1, out2)
