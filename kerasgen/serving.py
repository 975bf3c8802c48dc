"""A client for kerasgen models on TF Serving, over REST (port 8501) or gRPC (port 8500).

    from kerasgen.serving import ServingClient
    client = ServingClient("gru")                       # localhost, REST
    client.generate(["The "], max_new_tokens=100, top_p=0.9, seed=1)
    ServingClient("conv", protocol="grpc").sample([1, 2, 3])   # uint8 images

Server-side errors (HTTP 400, gRPC INVALID_ARGUMENT, an unknown model) come
back as one `ServingError` with TF Serving's own message.
"""
import json
import urllib.error
import urllib.request

import numpy as np

GENERATE_DEFAULTS = dict(max_new_tokens=200, temperature=0.8, top_k=0, top_p=1.0,
                         repetition_penalty=1.0, seed=0)


class ServingError(Exception):
    """The server refused or could not answer a request."""


class ServingClient:
    """One served model. `protocol` 'rest' uses TF Serving's JSON API; 'grpc' its PredictionService."""

    def __init__(self, model, host="localhost", rest_port=8501, grpc_port=8500, protocol="rest",
                 timeout=60.0):
        if protocol not in ("rest", "grpc"):
            raise ValueError(f"protocol must be 'rest' or 'grpc', got {protocol!r}")
        self.model, self.host, self.protocol, self.timeout = model, host, protocol, timeout
        self.rest_url = f"http://{host}:{rest_port}/v1/models/{model}"
        self.grpc_target = f"{host}:{grpc_port}"
        self._stub = None

    # REST ---------------------------------------------------------------------------------
    def _rest(self, suffix="", body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.rest_url + suffix, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                message = e.reason
            raise ServingError(f"{self.model}: HTTP {e.code}: {message}") from None
        except urllib.error.URLError as e:
            raise ServingError(f"cannot reach TF Serving at {self.rest_url}: {e.reason}") from None

    # gRPC ---------------------------------------------------------------------------------
    def _grpc(self, method, request):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if self._stub is None:
            channel = grpc.insecure_channel(self.grpc_target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingError(f"{self.model}: {e.code().name}: {e.details()}") from None

    def metadata(self):
        """The model's signatures as {name: {'inputs': {...}, 'outputs': {...}}} (TF Serving's JSON)."""
        if self.protocol == "rest":
            return self._rest("/metadata")["metadata"]["signature_def"]["signature_def"]
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name=self.model), metadata_field=["signature_def"])
        response = self._grpc("GetModelMetadata", request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return json_format.MessageToDict(signatures)["signatureDef"]

    def predict(self, inputs, signature="serving_default", columnar=False):
        """Runs `signature` on named inputs (each with a leading batch dimension) → named arrays."""
        if self.protocol == "grpc":
            import tensorflow as tf
            from tensorflow_serving.apis import model_pb2, predict_pb2

            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=self.model, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            response = self._grpc("Predict", request)
            return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        if columnar:
            body = {"signature_name": signature, "inputs": {k: _jsonable(v) for k, v in inputs.items()}}
            outputs = self._rest(":predict", body)["outputs"]
            return {k: np.asarray(v) for k, v in outputs.items()}
        rows = len(next(iter(inputs.values())))
        instances = [{k: _jsonable(v[i]) for k, v in inputs.items()} for i in range(rows)]
        predictions = self._rest(":predict", {"signature_name": signature, "instances": instances})
        predictions = predictions["predictions"]
        if predictions and isinstance(predictions[0], dict):
            return {k: np.asarray([p[k] for p in predictions]) for k in predictions[0]}
        return {"output": np.asarray(predictions)}

    def generate(self, prompts, columnar=False, **controls):
        """Texts continuing each prompt; controls as kerasgen.generate's flags."""
        unknown = set(controls) - set(GENERATE_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown generation settings: {', '.join(sorted(unknown))}")
        settings = {**GENERATE_DEFAULTS, **controls}
        inputs = {"prompt": np.array(prompts, dtype=object)}
        for key, value in settings.items():
            dtype = np.float32 if isinstance(GENERATE_DEFAULTS[key], float) else np.int32
            inputs[key] = np.full(len(prompts), value, dtype)
        text = self.predict(inputs, "generate", columnar)["text"]
        return [t.decode() if isinstance(t, bytes) else str(t) for t in text]

    def sample(self, seeds, columnar=False):
        """uint8 images (N, H, W, C), one per seed, from an image model."""
        images = self.predict({"seed": np.asarray(seeds, np.int32)}, columnar=columnar)["images"]
        return np.asarray(images, np.uint8)


def _jsonable(value):
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v),
                            otypes=[object])(value).tolist()
    return value.tolist()
