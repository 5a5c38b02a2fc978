"""Writes a BERT sentence-embedding checkpoint (Hugging Face layout: config.json +
model.safetensors) as an ONNX graph for the ONNX Runtime embedding backend, without torch.

The graph is built op by op with the `onnx` package from the safetensors weights, mirroring
transformers' BertModel (absolute positions, post-LayerNorm, exact GELU). Inputs are int64
`input_ids`, `attention_mask`, `token_type_ids` of shape [batch, seq]; the one output is
`last_hidden_state` [batch, seq, hidden]. Pooling and normalization stay in the caller, as for
the Hugging Face hub's own `onnx/model.onnx` files, which the same backend also reads.

    python scripts/export_onnx.py MODEL_DIR OUT.onnx
"""
import json
import math
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])
        tensors[name.removeprefix("bert.")] = array
    return tensors


class Graph:
    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self.initializers = []
        self.count = 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array, hint="c"):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, key, transpose=False):
        array = self.weights[key].astype(np.float32)
        return self.const(array.T if transpose else array, key)

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x, prefix):
        y = self.op("MatMul", [x, self.weight(prefix + ".weight", transpose=True)])
        return self.op("Add", [y, self.weight(prefix + ".bias")])

    def layer_norm(self, x, prefix, eps):
        return self.op(
            "LayerNormalization",
            [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
            axis=-1,
            epsilon=eps,
        )


def build(model_dir):
    config = json.load(open(os.path.join(model_dir, "config.json")))
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        sys.exit(f"{model_dir}: only BERT with absolute positions is supported")
    if config.get("hidden_act") != "gelu":
        sys.exit(f"{model_dir}: hidden_act {config.get('hidden_act')} is not supported")
    weights = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = config["layer_norm_eps"]
    g = Graph(weights)

    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    # Positions 0..seq per row, as a cumulative sum of ones (ORT's optimizer mishandles the
    # Shape -> Gather -> Range form).
    ones = g.op("ConstantOfShape", [g.op("Shape", [ids])], value=numpy_helper.from_array(np.array([1], dtype=np.int64)))
    positions = g.op("Sub", [g.op("CumSum", [ones, g.const(np.array(1, dtype=np.int64))]), ones])
    x = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), ids], axis=0)
    x = g.op("Add", [x, g.op("Gather", [g.weight("embeddings.position_embeddings.weight"), positions], axis=0)])
    x = g.op("Add", [x, g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), types], axis=0)])
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    # Additive mask [batch, 1, 1, seq]: 0 where attended, a large negative number on padding.
    mask_f = g.op("Cast", [g.op("Unsqueeze", [mask, g.const(np.array([1, 2], dtype=np.int64))])], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [g.const(np.array(1.0, dtype=np.float32)), mask_f]), g.const(np.array(-1e9, dtype=np.float32))])
    split_heads = g.const(np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const(np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const(np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    half = g.const(np.array(0.5, dtype=np.float32))
    one = g.const(np.array(1.0, dtype=np.float32))
    sqrt2 = g.const(np.array(math.sqrt(2.0), dtype=np.float32))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.query"), split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.value"), split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attended = g.linear(context, p + ".attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x]), p + ".attention.output.LayerNorm", eps)
        inner = g.linear(x, p + ".intermediate.dense")
        # Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))).
        gelu = g.op("Mul", [g.op("Mul", [inner, half]), g.op("Add", [one, g.op("Erf", [g.op("Div", [inner, sqrt2])])])])
        out = g.linear(gelu, p + ".output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), p + ".output.LayerNorm", eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    dims = ["batch", "seq"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in (ids, mask, types)]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden])
    graph = helper.make_graph(g.nodes, "bert", inputs, [output], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tributary")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = sys.argv[1], sys.argv[2]
    model = build(model_dir)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # Written aside and renamed, so an interrupted run never leaves a truncated model behind.
    partial = out + ".partial"
    onnx.save(model, partial)
    os.replace(partial, out)


if __name__ == "__main__":
    main()
