"""torchao's conv-BatchNorm patterns exported once per process (frontends/torch/pattern_cache.py):
a pattern is recognised by its code, closure and input shapes, each caller gets its own copy, and
anything the key cannot describe is exported as before."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from condition.frontends.torch import pattern_cache  # noqa: E402


def _qat_utils():
    from torchao.quantization.pt2e import qat_utils

    return qat_utils


def key(pattern, shape=(1, 1, 3, 3), **kwargs):
    return pattern_cache.pattern_key(pattern, (torch.randn(*shape),), False, kwargs)


def test_the_key_tells_patterns_apart_by_closure_conv_and_shapes_not_by_values():
    make = _qat_utils()._get_quantized_qat_conv_bn_pattern
    base = key(make(True, True, True, F.conv2d, True), scale=torch.tensor([1.0]))
    assert base == key(make(True, True, True, F.conv2d, True), scale=torch.tensor([7.0]))  # values are graph inputs
    assert base != key(make(False, True, True, F.conv2d, True), scale=torch.tensor([1.0]))  # per-tensor
    assert base != key(make(True, True, True, F.conv1d, True), scale=torch.tensor([1.0]))  # another conv
    assert base != key(make(True, True, True, F.conv2d, True), shape=(1, 1, 3), scale=torch.tensor([1.0]))
    assert base != key(make(True, True, True, F.conv2d, True), scale=torch.tensor([1]))  # dtype


def test_a_pattern_closing_over_a_tensor_is_not_cached():
    weight = torch.ones(1)

    def pattern(x):
        return x * weight

    with pytest.raises(pattern_cache._Uncacheable):
        key(pattern)


def test_each_caller_gets_its_own_copy_of_one_export():
    calls = []

    def export(pattern, example_inputs, is_cuda=False, **kwargs):
        calls.append(pattern)
        gm = torch.fx.symbolic_trace(pattern)
        return gm

    get = pattern_cache._cached(export)

    def double(x):
        return x * 2

    a = get(double, (torch.randn(2),))
    a.graph.erase_node(next(n for n in a.graph.nodes if n.op == "output"))  # a pass editing its pattern
    b = get(double, (torch.randn(2),))
    assert len(calls) == 1 and b is not a
    assert [n.op for n in b.graph.nodes][-1] == "output"


def test_conv_batchnorm_helpers_run_only_for_convs_the_graph_has():
    seen = []
    helper = pattern_cache._only_for_present_convs(lambda m, conv_fn, *a, **k: seen.append(conv_fn.__name__) or m)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    graph = torch.export.export(conv.eval(), (torch.randn(1, 1, 5, 5),)).module()
    for fn in (F.conv1d, F.conv2d, F.conv_transpose1d, F.conv_transpose2d):
        helper(graph, fn, (), False)
    assert seen == ["conv2d"]
