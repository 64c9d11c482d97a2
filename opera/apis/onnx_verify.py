"""Check an exported graph against the PyTorch model it came from.

:func:`verify_onnx` runs the model's :class:`.InferenceGraph` in PyTorch and
the file in ONNX Runtime on the same images and measures, per output, the
largest absolute difference:

- every raw output of the graph (``cls_logits``, ``boxes`` in [0, 1],
  ``scores``, ``labels``, ``keypoints`` in [0, 1]), over every query;
- the final results through the shared post-processing
  (:func:`.inference_graph.graph_results`), in pixels: ``final boxes
  (px)``, ``final scores``, ``final keypoints (px)``.

An output fails above its tolerance (:data:`ATOL` for normalised values and
scores, :data:`PIXEL_ATOL` for pixels).

Top-k selections. The graphs choose by score: the two-stage proposals
(``torch.topk`` over every encoder position; with mixed query selection
query i takes rank i's box and the i-th learned content), PETR's top
persons, and the post-processing keeps the best (query, class) pairs. Two
entries whose scores differ by less than float rounding (about 1e-6 here:
ONNX Runtime's kernels add in another order than PyTorch's, and so does
PyTorch itself on another number of threads) can be ranked the other way,
and then the queries built from them differ by far more than any tolerance
although both computations are right. A model whose top-k picks 900 of
10,000 close scores (DINO-5scale with random weights) has several such
pairs in almost every image.

So the final results are always compared at the pairs PyTorch's
post-processing keeps (its top-k choices imposed on the post-processing of
ONNX Runtime's outputs; near-equal final scores ranked the other way do
not count), and when the graph's outputs differ, :func:`verify_onnx` also
runs a copy of the graph whose top-k choices are PyTorch's
(:func:`with_given_topk`): if that copy agrees, and the scores each top-k
ranks agree, the graph computes PyTorch's function and the differences
come from near-ties alone (reported with the score gaps). Whether that
passes is the caller's choice (``--allow-topk-ties`` of
``tools/deployment/pytorch2onnx.py``).

onnx and onnxruntime are imported only here, when called.
"""
import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from opera.core.visualization import split_result
from .inference_graph import InferenceGraph, graph_results

#: Tolerance of the raw outputs (logits; boxes and keypoints in [0, 1] of
#: the image; scores) and of the final scores.
ATOL = 1e-3
#: Tolerance of the final boxes and keypoints, in pixels.
PIXEL_ATOL = 0.5
#: Final outputs (after the post-processing) and where they are in
#: ``split_result``: (name, part, columns, in pixels).
FINAL_OUTPUTS = (('final boxes (px)', 0, slice(0, 4), True),
                 ('final scores', 0, 4, False),
                 ('final keypoints (px)', 2, slice(0, 2), True))
GIVEN_PREFIX = 'opera_given_topk_'
OWN_PREFIX = 'opera_own_topk_'
SCORES_PREFIX = 'opera_topk_scores_'


class TopkSelections(TorchFunctionMode):
    """Record the indices of every top-k call, or impose given ones.

    Inside ``with TopkSelections() as record:`` every ``torch.topk`` /
    ``Tensor.topk`` runs as usual and ``record.calls`` lists ``(input,
    result)`` in call order. With ``given`` (a list of index tensors, one
    per call in that order) call i returns those indices and the input's
    values at them instead of its own choice.
    """

    def __init__(self, given=None):
        super().__init__()
        self.given = None if given is None else list(given)
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func not in (torch.topk, torch.Tensor.topk):
            return result
        if self.given is not None:
            if len(self.calls) >= len(self.given):
                raise RuntimeError(
                    f'top-k call {len(self.calls) + 1} has no given indices '
                    f'({len(self.given)} given)')
            indices = self.given[len(self.calls)]
            if indices.shape != result.indices.shape:
                raise RuntimeError(
                    f'top-k call {len(self.calls) + 1} chooses '
                    f'{tuple(result.indices.shape)}, given '
                    f'{tuple(indices.shape)}')
            dim = kwargs.get('dim', args[2] if len(args) > 2 else -1)
            indices = indices.to(result.indices.device)
            result = torch.return_types.topk(
                (args[0].gather(dim, indices), indices))
        self.calls.append((args[0], result))
        return result


def with_given_topk(model):
    """A copy of an ONNX model whose top-k choices are inputs.

    TopK node i of the graph (in graph order) keeps running, on the same
    scores, but its outputs are no longer used: its indices become the
    graph input ``opera_given_topk_{i}`` (int64, the shape TopK gives) and
    its values those inputs' scores (``GatherElements``). Its own choice
    and the scores it ranks are added as outputs ``opera_own_topk_{i}`` and
    ``opera_topk_scores_{i}``.

    Args:
        model (onnx.ModelProto): Not changed.

    Returns:
        tuple[onnx.ModelProto, int]: The copy and its number of TopK nodes.
    """
    import onnx
    from onnx import TensorProto, helper
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != 'TopK':
            nodes.append(node)
            continue
        axis = next((helper.get_attribute_value(a)
                     for a in node.attribute if a.name == 'axis'), -1)
        values, indices = node.output
        given, own = f'{GIVEN_PREFIX}{count}', f'{OWN_PREFIX}{count}'
        scores = f'{SCORES_PREFIX}{count}'
        own_node = onnx.NodeProto()
        own_node.CopyFrom(node)
        del own_node.output[:]
        own_node.output.extend([f'{own}_values', own])
        nodes += [
            own_node,
            helper.make_node('Identity', [node.input[0]], [scores]),
            helper.make_node('Identity', [given], [indices]),
            helper.make_node(
                'GatherElements', [node.input[0], given], [values],
                axis=axis)
        ]
        graph.input.append(
            helper.make_tensor_value_info(given, TensorProto.INT64, None))
        graph.output.extend([
            helper.make_tensor_value_info(own, TensorProto.INT64, None),
            helper.make_tensor_value_info(scores, TensorProto.FLOAT, None)
        ])
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return copy, count


def max_difference(a, b):
    """Largest |a - b| of two arrays (inf if their shapes differ)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float('inf')
    return float(np.abs(a - b).max()) if a.size else 0.0


def final_differences(detector, torch_outputs, ort_outputs, img_metas):
    """Largest differences of the final results, at the (query, class)
    pairs PyTorch's post-processing keeps (its top-k choices imposed on the
    post-processing of ``ort_outputs``).

    Returns:
        dict[str, float]: ``final boxes (px)``, ``final scores`` and for
        pose models ``final keypoints (px)``; inf where the two results
        differ in size.
    """
    torch_outputs = [torch.as_tensor(np.asarray(o)) for o in torch_outputs]
    ort_outputs = [torch.as_tensor(np.asarray(o)) for o in ort_outputs]
    with torch.no_grad():
        with TopkSelections() as record:
            ours = graph_results(detector, torch_outputs, img_metas)
        with TopkSelections([r.indices for _, r in record.calls]):
            theirs = graph_results(detector, ort_outputs, img_metas)
    diffs = {}
    for name, part, columns, _ in FINAL_OUTPUTS:
        pairs = [(split_result(a)[part], split_result(b)[part])
                 for a, b in zip(ours, theirs)]
        if pairs and pairs[0][0] is not None:
            diffs[name] = max(
                max_difference(a[..., columns], b[..., columns])
                if a.shape == b.shape else float('inf') for a, b in pairs)
    return diffs


def tolerance_of(name, atol=ATOL, pixel_atol=PIXEL_ATOL):
    """The tolerance of an output by its name (pixels for ``(px)``)."""
    return pixel_atol if name.endswith('(px)') else atol


def _session(model_or_file, num_threads=None):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    if not isinstance(model_or_file, str):
        model_or_file = model_or_file.SerializeToString()
    return onnxruntime.InferenceSession(
        model_or_file, options, providers=['CPUExecutionProvider'])


def verify_onnx(detector,
                onnx_file,
                img,
                img_metas,
                atol=ATOL,
                pixel_atol=PIXEL_ATOL,
                num_threads=None):
    """ONNX Runtime against PyTorch on one image batch.

    Args:
        detector (nn.Module): The model the file was exported from (CPU,
            eval mode).
        onnx_file (str): The exported file.
        img (Tensor): [bs, 3, H, W] at the file's input size.
        img_metas (list[dict]): Per image ``img_shape`` and
            ``scale_factor`` (the final results are in pixels of the
            original image).
        atol, pixel_atol (float): Tolerances (see :data:`ATOL`,
            :data:`PIXEL_ATOL`).
        num_threads (int, optional): ONNX Runtime intra-op threads.

    Returns:
        dict: ``differences`` {output name: largest difference};
        ``failures`` {name: (difference, tolerance)} of those above their
        tolerance; ``given_topk`` None when nothing failed or the graph has
        no top-k, else the same with PyTorch's top-k choices imposed on the
        graph (``differences``, ``failures``, with the differences of the
        scores each top-k ranks as ``top-k {i} scores``) and ``reordered``,
        one ``(entries chosen differently, of how many, largest PyTorch
        score gap between the two choices)`` per top-k.
    """
    graph = InferenceGraph(detector)
    names = list(graph.output_names)
    img = img.detach().cpu().float()
    with torch.no_grad(), TopkSelections() as record:
        torch_outputs = [o.numpy() for o in graph(img)]
    session = _session(onnx_file, num_threads)
    ort_outputs = session.run(names, {'img': img.numpy()})

    def measure(theirs, extra=None):
        diffs = {
            name: max_difference(ours, other)
            for name, ours, other in zip(names, torch_outputs, theirs)
        }
        diffs.update(extra or {})
        diffs.update(
            final_differences(detector, torch_outputs, theirs, img_metas))
        failures = {
            name: (value, tolerance_of(name, atol, pixel_atol))
            for name, value in diffs.items()
            if not value <= tolerance_of(name, atol, pixel_atol)
        }
        return dict(differences=diffs, failures=failures)

    report = measure(ort_outputs)
    report['given_topk'] = None
    if report['failures'] and record.calls:
        report['given_topk'] = _with_torch_topk(onnx_file, names, img,
                                                record.calls, measure,
                                                num_threads)
    return report


def _with_torch_topk(onnx_file, names, img, calls, measure, num_threads):
    """:func:`verify_onnx`'s second run: the graph with PyTorch's top-k
    choices (None if the graph's TopK nodes are not PyTorch's calls)."""
    import onnx
    model, count = with_given_topk(onnx.load(onnx_file))
    if count != len(calls):
        return None
    feeds = {'img': img.numpy()}
    feeds.update({
        f'{GIVEN_PREFIX}{i}': result.indices.numpy()
        for i, (_, result) in enumerate(calls)
    })
    extra_names = [f'{p}{i}' for i in range(count)
                   for p in (OWN_PREFIX, SCORES_PREFIX)]
    outputs = _session(model, num_threads).run(names + extra_names, feeds)
    theirs, extra = outputs[:len(names)], outputs[len(names):]
    score_diffs, reordered = {}, []
    for i, (scores, result) in enumerate(calls):
        own, ort_scores = extra[2 * i], extra[2 * i + 1]
        score_diffs[f'top-k {i} scores'] = max_difference(
            scores.numpy(), ort_scores)
        torch_index = result.indices.numpy()
        differ = torch_index != own
        gap = 0.0
        if differ.any():
            dim = _topk_dim(scores, result.indices)
            own_scores = np.take_along_axis(scores.numpy(), own, dim)
            gap = float(
                np.abs(result.values.numpy() - own_scores)[differ].max())
        reordered.append((int(differ.sum()), differ.size, gap))
    report = measure(theirs, score_diffs)
    report['reordered'] = reordered
    return report


def _topk_dim(scores, indices):
    """The dimension a top-k call chose along (the one whose size
    changed, else the last)."""
    for dim, (a, b) in enumerate(zip(scores.shape, indices.shape)):
        if a != b:
            return dim
    return scores.dim() - 1
