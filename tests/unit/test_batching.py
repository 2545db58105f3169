"""reefd/batching.py: dynamic-batch graphs derived from two lowerings."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from reefd.batching import BatchRule, at_batch, batch_of, validate_all
from reefd.clients.lower import lower
from reefd.demo_models import small_cnn
from reefd.errors import GraphError, RequestError, UnsupportedOp
from reefd.memory import run_graph


@pytest.fixture(scope="module")
def cnn():
    model, (x,) = small_cnn(batch=3)
    return model, x, lower(model, (x,), max_batch=5)


def test_rule_covers_inputs_outputs_and_batch_params(cnn):
    _, _, low = cnn
    rule = low.batch
    assert rule is not None and rule.max_batch == 5
    assert dict(rule.shapes)["in0"] == (1, 0, 0, 0)
    assert low.graph.inputs[0].shape[0] == 5
    kernels = {low.graph.calls[i].kernel for i, _, _ in rule.params}
    assert "conv2d" in kernels


@pytest.mark.parametrize("batch", [1, 2, 4, 5])
def test_graph_at_each_batch_matches_eager(cnn, batch):
    model, x, low = cnn
    inputs = x[torch.arange(batch) % x.shape[0]]
    graph = at_batch(low.graph, batch, low.batch)
    assert batch_of(low.graph, low.batch, [tuple(inputs.shape)]) == batch
    got = run_graph(graph, low.weights, {"in0": inputs})
    with torch.no_grad():
        want = model(inputs)
    torch.testing.assert_close(got["out0"], want, rtol=1e-5, atol=1e-5)


def test_batch_outside_the_range_is_a_request_error(cnn):
    _, _, low = cnn
    with pytest.raises(RequestError, match="outside 1..5"):
        at_batch(low.graph, 6, low.batch)
    shape = list(low.graph.inputs[0].shape)
    shape[0] = 7
    with pytest.raises(RequestError, match="not a batch of 1..5"):
        batch_of(low.graph, low.batch, [tuple(shape)])


def test_validate_all_names_the_first_bad_batch(cnn):
    _, _, low = cnn
    validate_all(low.graph, low.batch)
    lying = dataclasses.replace(low.batch, max_batch=9)  # claims 4 more samples
    with pytest.raises(GraphError, match="at batch 1"):
        validate_all(low.graph, lying)


def test_rule_survives_the_wire(cnn):
    _, _, low = cnn
    assert BatchRule.from_wire(low.batch.to_wire()) == low.batch
    with pytest.raises(GraphError, match="malformed batch rule"):
        BatchRule.from_wire({"max": 3})


class Halves(nn.Module):
    """Its shapes depend on batch // 2: not affine in the batch size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.reshape(x.shape[0] // 2, -1))


def test_a_model_that_is_not_affine_in_the_batch_is_refused():
    with pytest.raises(UnsupportedOp, match="dynamic batch"):
        lower(Halves(), (torch.randn(4, 3),), max_batch=4)
