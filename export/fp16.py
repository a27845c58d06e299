"""fp16 variant as a small ONNX pass: fp16 weights and fp16 "islands", pose math kept fp32.

Why not a generic float→float16 converter: it flips every float tensor, including the rotary
angles (``W @ (x, y, θ, t)`` at ±150 m: fp16 would err by radians) and ops that ONNX Runtime's
CPU lacks in fp16 (it then inserts casts itself, or the graph becomes invalid). Here the
*seeds* are the weight-carrying ops (``MatMul``/``Gemm`` with a weight initializer, embedding
``Gather``): their weights are stored in fp16 and they compute in fp16. Islands grow through
the elementwise ops in ``FOLLOW`` whose every non-constant float input is already fp16 (bias
adds, GELU), so an MLP stays fp16 end to end. Everything else (feature engineering, angles,
cos/sin, the rotation, masks, attention's softmax, LayerNorm statistics, the residual stream,
outputs) stays fp32, with one ``Cast`` at each island boundary; the rotary-angle ``Einsum``
(``pose_angles``) and everything it depends on are excluded explicitly (:func:`pose_math_nodes`),
so no weight op upstream of an angle can turn fp16. Inputs and outputs keep their fp32 types,
so the runtime API does not change.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEEDS = {"MatMul", "Gemm"}  # fp16 when an operand is a float weight initializer
GATHER = "Gather"  # embedding tables: fp16 when the data operand is a float initializer
FOLLOW = {"Add", "Sub", "Mul", "Div", "Gelu", "Erf", "Relu", "Tanh", "Sigmoid", "FastGelu", "BiasGelu"}
TRIG = ("Cos", "Sin", "Atan")  # always fp32 (none is a seed or in FOLLOW)
ANGLES = ("Einsum",)  # the rotary angles W·(x, y, θ, t): these and everything they depend on stay fp32
FLOAT = TensorProto.FLOAT
HALF = TensorProto.FLOAT16


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of fp32 tensors (graph inputs, initializers, inferred value_info) in the graph."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {i.name for i in g.initializer if i.data_type == FLOAT}
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.tensor_type.elem_type == FLOAT:
            out.add(vi.name)
    return out


def pose_math_nodes(graph: onnx.GraphProto) -> set[int]:
    """Indices of the trigonometry nodes, the angle nodes and every node the angles depend on."""
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    todo = [i for i, n in enumerate(graph.node) if n.op_type in ANGLES]
    seen = set(todo) | {i for i, n in enumerate(graph.node) if n.op_type in TRIG}
    while todo:
        for name in graph.node[todo.pop()].input:
            j = producer.get(name)
            if j is not None and j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` with fp16 weights and fp16 islands (see module doc)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    floats = _float_tensors(m)
    init = {i.name: i for i in g.initializer}
    weight = {n for n, t in init.items() if t.data_type == FLOAT and len(t.dims) >= 2}
    protected = pose_math_nodes(g)  # even a weight-carrying op there stays fp32
    half_nodes: set[int] = set()
    half_tensors: set[str] = set()  # produced in fp16 (after renaming: name + "__fp16")
    for idx, n in enumerate(g.node):  # the graph is topologically sorted
        dyn = [i for i in n.input if i and i in floats and i not in init]
        if n.op_type in SEEDS and any(i in weight for i in n.input):
            ok = True
        elif n.op_type == GATHER and n.input[0] in weight:
            ok = True
        elif n.op_type in FOLLOW and dyn and all(i in half_tensors for i in dyn):
            ok = True
        else:
            ok = False
        if ok and idx not in protected and all(o in floats for o in n.output):
            half_nodes.add(idx)
            half_tensors.update(n.output)
    consumers_fp32 = {i for idx, n in enumerate(g.node) if idx not in half_nodes for i in n.input}
    consumers_fp32 |= {o.name for o in g.output}
    new_nodes, to_half, converted = [], {}, {}
    for idx, n in enumerate(g.node):
        if idx not in half_nodes:
            new_nodes.append(n)
            continue
        for j, name in enumerate(n.input):
            if not name or name not in floats:
                continue  # indices, shapes, ...
            if name in half_tensors:
                n.input[j] = name + "__fp16"
            elif name in init:
                if name not in converted:
                    h = numpy_helper.from_array(numpy_helper.to_array(init[name]).astype(np.float16), name + "__fp16")
                    converted[name] = h
                n.input[j] = name + "__fp16"
            else:  # an fp32 activation entering an island
                if name not in to_half:
                    to_half[name] = helper.make_node("Cast", [name], [name + "__fp16"], to=HALF, name=f"{name}__to_fp16")
                    new_nodes.append(to_half[name])
                n.input[j] = name + "__fp16"
        outs = list(n.output)
        for j, o in enumerate(outs):
            n.output[j] = o + "__fp16"
        new_nodes.append(n)
        for o in outs:
            if o in consumers_fp32:
                new_nodes.append(helper.make_node("Cast", [o + "__fp16"], [o], to=FLOAT, name=f"{o}__to_fp32"))
    # fp32 initializers only fp16 islands used are dropped: the file holds each weight once
    still_used = {i for n in new_nodes for i in n.input}
    keep = [t for t in g.initializer if t.name in still_used]
    del g.initializer[:]
    g.initializer.extend(keep + list(converted.values()))
    del g.node[:]
    g.node.extend(new_nodes)
    # stale fp32 value_info of renamed tensors would contradict the fp16 producers
    vis = [vi for vi in g.value_info if vi.name not in half_tensors]
    del g.value_info[:]
    g.value_info.extend(vis)
    onnx.checker.check_model(m)
    return m


def fp32_pose_math(model: onnx.ModelProto) -> bool:
    """True when no node of :func:`pose_math_nodes` has an fp16 input or output."""
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    types |= {t.name: t.data_type for t in g.initializer}
    return all(types.get(t) != HALF for i in pose_math_nodes(g) for t in [*g.node[i].input, *g.node[i].output])
