"""The graph Keras traced for a Sequential or functional model, read through public Keras API only.

Keras keeps the graph in private attributes; its public form is the functional model's config
(``get_config()``): each operation's ``inbound_nodes`` name the tensors it was applied to by
``keras_history`` ``[operation, node, tensor]`` and their shapes, ``input_layers`` and
``output_layers`` the model's ends. :func:`read_graph` turns that into :class:`Call` records that
hold the operations themselves (``model.operations``, which lists ``keras.ops`` calls too).
"""

import dataclasses

import keras

__all__ = ["Tensor", "Call", "Graph", "read_graph"]


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A tensor of the graph: output ``index`` of the operation named ``producer``.

    Two tensors are equal when producer and index are; that names one tensor once no operation is
    applied twice (the exporter refuses shared layers first). ``shape`` (batch axis first, None
    where unknown) is known for the tensors an operation takes, None for the model's ends.
    """

    producer: str
    index: int
    shape: tuple | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Call:
    """One application of ``operation`` (a Layer or a ``keras.ops`` call) to the tensors ``inputs``."""

    operation: keras.Operation
    inputs: tuple  # of Tensor: the Keras tensors among its arguments, in order


@dataclasses.dataclass(frozen=True)
class Graph:
    """What :func:`read_graph` returns.

    ``model`` is a functional ``keras.Model`` over the traced graph; ``calls`` every application of
    an operation, in Keras' order (from the inputs on; InputLayers, which are applied to nothing,
    left out); ``operations`` ``{name: operation}`` for every operation, InputLayers included.
    """

    model: keras.Model
    inputs: tuple   # of Tensor
    outputs: tuple  # of Tensor
    calls: tuple    # of Call
    operations: dict


def read_graph(model):
    """The :class:`Graph` Keras traced for ``model``, or None when it has none.

    A functional model has its own graph, a built Sequential the one Keras traced through its layers
    (the same functional model Keras builds for it, over the same tensors: no layer is called again).
    An unbuilt Sequential and a subclassed Model (its ``call()`` wires layers in Python) have no
    ``inputs``: None.
    """
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        return None
    functional = keras.Model(inputs, outputs, name=model.name)
    config = functional.get_config()
    operations = {operation.name: operation for operation in functional.operations}
    calls = tuple(Call(operations[entry["name"]], tuple(_tensors(node)))
                  for entry in config["layers"] for node in entry["inbound_nodes"])
    return Graph(functional, _ends(config["input_layers"]), _ends(config["output_layers"]), calls, operations)


def _ends(references):
    """Tensors of ``input_layers``/``output_layers``: one ``[name, node, index]`` or a list of them."""
    if references and isinstance(references[0], str):
        references = [references]
    return tuple(Tensor(name, index) for name, _, index in references)


def _tensors(value):
    """The serialized Keras tensors in a node's serialized ``args``/``kwargs``, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, _, index = value["config"]["keras_history"]
            return [Tensor(name, index, tuple(value["config"]["shape"]))]
        return [tensor for item in value.values() for tensor in _tensors(item)]
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in _tensors(item)]
    return []
