"""A client for kerasgen models on TF Serving, over REST (port 8501) or gRPC (port 8500), or, to
check an export where no server runs, answered in process from the SavedModel itself.

    from kerasgen.serving_client import ServingClient
    client = ServingClient("gru")                       # localhost, REST
    client.generate(["The "], max_new_tokens=100, top_p=0.9, seed=1)
    ServingClient("conv", protocol="grpc").sample([1, 2, 3])   # uint8 images
    ServingClient("gru", protocol="local", saved_model="models/gru/1").generate(["The "])

Every request has a total deadline (`timeout`, by default a few seconds plus
the generation's own time), so a server that stalls or trickles bytes cannot
hold a caller. Server-side errors (HTTP 400, gRPC INVALID_ARGUMENT, an unknown
model), timeouts and malformed replies all come back as one `ServingError`.
Importing this module does not import TensorFlow (gRPC calls do).
"""
import contextlib
import dataclasses
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse

import numpy as np

from kerasgen.text.sampling import SERVED_CONTROLS, Sampling

PROTOCOLS = ("rest", "grpc", "local")  # local: tf.saved_model.load in this process, no server
BASE_TIMEOUT = 10.0  # seconds for any request: connection, queueing, a short answer
SECONDS_PER_TOKEN = 0.01  # plus this per generated token per prompt (the plain graph: ~2 ms)


class ServingError(Exception):
    """The server refused, failed, or did not answer in time."""


class ServingClient:
    """One served model. `protocol` 'rest' uses TF Serving's JSON API; 'grpc' its PredictionService.

    `timeout`: the total seconds a request may take; None: BASE_TIMEOUT plus
    SECONDS_PER_TOKEN per token a `generate` call asks for.
    """

    def __init__(self, model, host="localhost", rest_port=8501, grpc_port=8500, protocol="rest",
                 timeout=None, saved_model=None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if (protocol == "local") != (saved_model is not None):
            raise ValueError("protocol 'local' takes a saved_model directory, and only it does")
        self.model, self.host, self.protocol, self.timeout = model, host, protocol, timeout
        self.rest_port, self.rest_url = rest_port, f"http://{host}:{rest_port}/v1/models/{model}"
        self.grpc_target = f"{host}:{grpc_port}"
        self.saved_model = saved_model
        self._stub = self._loaded = None

    def _deadline(self, tokens=0):
        return time.monotonic() + (self.timeout if self.timeout is not None
                                   else BASE_TIMEOUT + SECONDS_PER_TOKEN * tokens)

    # REST ---------------------------------------------------------------------------------
    def _rest(self, suffix="", body=None, deadline=None):
        """GET (no body) or POST JSON; the whole exchange ends by `deadline` (time.monotonic):
        a watchdog shuts the socket then, so no server can hold the caller longer."""
        deadline = deadline or self._deadline()
        path = urllib.parse.urlsplit(self.rest_url + suffix).path
        connection = http.client.HTTPConnection(self.host, self.rest_port,
                                                timeout=max(0.001, deadline - time.monotonic()))
        expired = threading.Event()
        watchdog = None
        try:
            connection.connect()
            sock = connection.sock

            def expire():
                expired.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
            watchdog.start()
            data = None if body is None else json.dumps(body).encode()
            connection.request("GET" if data is None else "POST", path, body=data,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if expired.is_set():
                raise TimeoutError()
        except (socket.timeout, TimeoutError, http.client.HTTPException, OSError) as e:
            if expired.is_set() or isinstance(e, (socket.timeout, TimeoutError)):
                raise ServingError(f"{self.model}: no complete answer from {self.rest_url} within "
                                   f"the deadline") from None
            raise ServingError(f"cannot reach TF Serving at {self.rest_url}: "
                               f"{getattr(e, 'strerror', None) or e}") from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            connection.close()
        try:
            reply = json.loads(payload)
        except ValueError:
            reply = None
        if response.status != 200:
            message = reply.get("error") if isinstance(reply, dict) else response.reason
            raise ServingError(f"{self.model}: HTTP {response.status}: {message}")
        if not isinstance(reply, dict):
            raise ServingError(f"{self.model}: malformed reply from {self.rest_url} (not a JSON object)")
        return reply

    # gRPC ---------------------------------------------------------------------------------
    def _grpc(self, method, request, deadline=None):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if self._stub is None:
            channel = grpc.insecure_channel(self.grpc_target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        deadline = deadline or self._deadline()
        try:
            return getattr(self._stub, method)(request, timeout=max(0.001, deadline - time.monotonic()))
        except grpc.RpcError as e:
            raise ServingError(f"{self.model}: {e.code().name}: {e.details()}") from None

    # local: the SavedModel in this process -------------------------------------------------
    def _signature_defs(self):
        """The SavedModel's SignatureDefs as the gRPC metadata gives them (the same protos)."""
        from google.protobuf import json_format

        return {name: json_format.MessageToDict(signature)
                for name, signature in read_signature_defs(self.saved_model).items()}

    def _local(self, inputs, signature):
        """What TF Serving's Predict answers, from tf.saved_model.load in this process."""
        import tensorflow as tf

        if self._loaded is None:
            self._signature_defs()  # a missing or broken SavedModel: one ServingError
            self._loaded = tf.saved_model.load(self.saved_model)
        function = self._loaded.signatures.get(signature)
        if function is None:
            raise ServingError(f"{self.model}: NOT_FOUND: no signature {signature!r} in "
                               f"{self.saved_model} (it has {', '.join(self._loaded.signatures)})")
        specs = function.structured_input_signature[1]
        inputs = {**signature_defaults(self.saved_model).get(signature, {}), **inputs}  # as TF Serving
        if set(inputs) != set(specs):
            raise ServingError(f"{self.model}: INVALID_ARGUMENT: {signature} takes inputs "
                               f"{', '.join(sorted(specs))}, got {', '.join(sorted(inputs)) or 'none'}")
        try:
            outputs = function(**{k: tf.constant(np.asarray(v), specs[k].dtype) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
            message = getattr(e, "message", str(e)).strip().splitlines()[0]
            raise ServingError(f"{self.model}: INVALID_ARGUMENT: {message}") from None
        return {k: v.numpy() for k, v in outputs.items()}

    def metadata(self):
        """The model's signatures as {name: {'inputs': {...}, 'outputs': {...}}} (TF Serving's JSON)."""
        if self.protocol == "local":
            return self._signature_defs()
        if self.protocol == "rest":
            try:
                return self._rest("/metadata")["metadata"]["signature_def"]["signature_def"]
            except (KeyError, TypeError):
                raise ServingError(f"{self.model}: malformed metadata reply") from None
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name=self.model), metadata_field=["signature_def"])
        response = self._grpc("GetModelMetadata", request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return json_format.MessageToDict(signatures)["signatureDef"]

    def predict(self, inputs, signature="serving_default", columnar=False, deadline=None):
        """Runs `signature` on named inputs (each with a leading batch dimension) → named arrays."""
        if self.protocol == "local":
            return self._local(inputs, signature)
        if self.protocol == "grpc":
            import tensorflow as tf
            from tensorflow_serving.apis import model_pb2, predict_pb2

            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=self.model, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            response = self._grpc("Predict", request, deadline)
            return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        try:
            if columnar:
                body = {"signature_name": signature,
                        "inputs": {k: _jsonable(v) for k, v in inputs.items()}}
                outputs = self._rest(":predict", body, deadline)["outputs"]
                return {k: np.asarray(v) for k, v in outputs.items()}
            rows = len(next(iter(inputs.values()))) if inputs else 0
            instances = [{k: _jsonable(v[i]) for k, v in inputs.items()} for i in range(rows)]
            body = {"signature_name": signature, "instances": instances}
            predictions = self._rest(":predict", body, deadline)["predictions"]
            if predictions and isinstance(predictions[0], dict):
                return {k: np.asarray([p[k] for p in predictions]) for k in predictions[0]}
            return {"output": np.asarray(predictions)}
        except (KeyError, TypeError, AttributeError):
            raise ServingError(f"{self.model}: malformed predict reply (no outputs)") from None

    def generate(self, prompts, columnar=False, **controls):
        """Texts continuing each prompt; controls as kerasgen.generate's flags, the same defaults."""
        unknown = set(controls) - set(SERVED_CONTROLS)
        if unknown:
            raise ValueError(f"unknown generation settings: {', '.join(sorted(unknown))}")
        settings = dataclasses.replace(Sampling(), **controls)  # checks the values too
        inputs = {"prompt": np.array(prompts, dtype=object)}
        for key in SERVED_CONTROLS:
            value = getattr(settings, key)
            if key == "stop":  # the same stop strings in each row; none: the signature's default
                if value:
                    inputs[key] = np.array([list(value)] * len(prompts), dtype=object)
            else:
                inputs[key] = np.full(len(prompts), value,
                                      np.float32 if isinstance(value, float) else np.int32)
        deadline = self._deadline(settings.max_new_tokens * len(prompts) * settings.width())
        outputs = self.predict(inputs, "generate", columnar, deadline)
        if "text" not in outputs:
            raise ServingError(f"{self.model}: malformed generate reply (no 'text')")
        return [t.decode() if isinstance(t, bytes) else str(t) for t in outputs["text"]]

    def sample(self, seeds, columnar=False):
        """uint8 images (N, H, W, C), one per seed, from an image model."""
        outputs = self.predict({"seed": np.asarray(seeds, np.int32)}, columnar=columnar)
        if "images" not in outputs:
            raise ServingError(f"{self.model}: malformed sample reply (no 'images')")
        return np.asarray(outputs["images"], np.uint8)


def read_signature_defs(path):
    """{name: SignatureDef proto} of the SavedModel in folder `path` (the init op left out)."""
    from tensorflow.core.protobuf import saved_model_pb2

    file = os.path.join(path, "saved_model.pb")
    try:
        with open(file, "rb") as f:
            saved = saved_model_pb2.SavedModel.FromString(f.read())
    except OSError as e:
        raise ServingError(f"cannot read {file}: {e.strerror or e}") from None
    except Exception as e:  # a protobuf DecodeError: not a SavedModel
        raise ServingError(f"{file} is not a SavedModel ({type(e).__name__})") from None
    return {name: signature for name, signature in saved.meta_graphs[0].signature_def.items()
            if not name.startswith("__")}  # the init op is not a signature to call


def signature_defaults(path):
    """{signature: {input: default array}}: what TF Serving fills in for inputs a request omits."""
    import tensorflow as tf

    return {name: {k: tf.make_ndarray(v) for k, v in signature.defaults.items()}
            for name, signature in read_signature_defs(path).items()}


def _jsonable(value):
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v),
                            otypes=[object])(value).tolist()
    return value.tolist()
