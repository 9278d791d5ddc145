"""An independent NIR evaluator, written from the NIR primitives (docs of neuromorphs/NIR,
"Primitives"): channel-first maps, Affine ``W x + b``, Conv2d as a cross-correlation over shifted
slices, Sum/AvgPool2d, Flatten, and Threshold/IF read as one time step. It shares no code with hone's
importer or with ``IntegerNetwork``; ``tests/test_nir.py`` and ``bench/nir_roundtrip.py`` check hone against it.
"""

import nir
import numpy as np

__all__ = ["evaluate"]


def _conv2d(x, node):
    weight, bias = np.asarray(node.weight, float), np.asarray(node.bias, float)
    _, _, kh, kw = weight.shape
    if isinstance(node.padding, str):
        pads = ((0, 0), (0, 0)) if node.padding == "valid" else (((kh - 1) // 2, kh - 1 - (kh - 1) // 2),
                                                                 ((kw - 1) // 2, kw - 1 - (kw - 1) // 2))
    else:
        ph, pw = np.broadcast_to(np.asarray(node.padding), (2,))
        pads = ((ph, ph), (pw, pw))
    x = np.pad(x, ((0, 0), (0, 0), *pads))
    height, width = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros((len(x), len(weight), height, width))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,fc->nfhw", x[:, :, i:i + height, j:j + width], weight[:, :, i, j])
    return out + bias[None, :, None, None]


def _pool(x, node, mean):
    kh, kw = np.broadcast_to(np.asarray(node.kernel_size), (2,))
    n, c, height, width = x.shape
    h, w = height // kh, width // kw
    windows = x[:, :, :h * kh, :w * kw].reshape(n, c, h, kh, w, kw)
    return windows.mean(axis=(3, 5)) if mean else windows.sum(axis=(3, 5))


def evaluate(graph, x, *, fire=np.greater):
    """Run a feed-forward NIR graph for one time step; ``fire(v, threshold)`` is the Heaviside rule."""
    following = dict(graph.edges)
    name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    outputs = []
    x = np.asarray(x, dtype=np.float64)
    while name in following:
        name = following[name]
        node = graph.nodes[name]
        if isinstance(node, nir.Flatten):
            x = x.reshape(len(x), -1)
        elif isinstance(node, nir.Affine):
            x = x.reshape(len(x), -1) @ np.asarray(node.weight, float).T + np.asarray(node.bias, float)
        elif isinstance(node, nir.Linear):
            x = x.reshape(len(x), -1) @ np.asarray(node.weight, float).T
        elif isinstance(node, nir.Conv2d):
            x = _conv2d(x, node)
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            x = _pool(x, node, isinstance(node, nir.AvgPool2d))
        elif isinstance(node, nir.Threshold):
            x = fire(x, np.asarray(node.threshold, float)).astype(np.float64)
            outputs.append(x)
        elif isinstance(node, nir.IF):
            x = fire(np.asarray(node.r, float) * x, np.asarray(node.v_threshold, float)).astype(np.float64)
            outputs.append(x)
        elif isinstance(node, nir.Output):
            break
        else:
            raise AssertionError(type(node).__name__)
    return outputs
