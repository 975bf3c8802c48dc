"""A minimal stand-in for tensorflow_model_server, for tests only: the endpoints the client uses.

REST: GET /v1/models/NAME, GET /v1/models/NAME/metadata, POST /v1/models/NAME:predict
(row `instances` and columnar `inputs`); gRPC: PredictionService Predict and
GetModelMetadata. Backed by the exported SavedModel; malformed requests get
the answers TF Serving gives: HTTP 400 {"error": …} / INVALID_ARGUMENT. Inputs
a request leaves out are filled from the SignatureDef's `defaults`, as TF
Serving's predict_util.cc does (GetInputValues).
"""
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

from kerasgen.serving_client import signature_defaults


class BadRequest(Exception):
    pass


class Served:
    def __init__(self, name, path):
        self.name, self.path = name, path
        self.model = tf.saved_model.load(path)
        self.defaults = signature_defaults(path)

    def specs(self, signature):
        if signature not in self.model.signatures:
            raise BadRequest(f"Serving signature name: \"{signature}\" not found in signature def")
        fn = self.model.signatures[signature]
        return fn, fn.structured_input_signature[1]

    def run(self, signature, inputs):
        fn, specs = self.specs(signature)
        inputs = {**self.defaults.get(signature, {}), **inputs}
        missing = sorted(set(specs) - set(inputs))
        extra = sorted(set(inputs) - set(specs))
        if missing or extra:
            raise BadRequest(f"input size does not match signature: missing {missing}, unknown {extra}")
        tensors = {}
        for key, spec in specs.items():
            value = np.asarray(inputs[key])
            if spec.dtype == tf.string:
                if value.dtype.kind not in "OSU":
                    raise BadRequest(f"{key}: expected string but got {value.dtype}")
                value = value.astype(object)
            elif value.dtype.kind not in "iuf" or (spec.dtype.is_integer and value.dtype.kind == "f"):
                raise BadRequest(f"{key}: expects {spec.dtype.name} but got {value.dtype}")
            if value.ndim != len(spec.shape):
                raise BadRequest(f"{key}: expects rank {len(spec.shape)} but got rank {value.ndim}")
            tensors[key] = tf.constant(value, spec.dtype)
        try:
            return {k: v.numpy() for k, v in fn(**tensors).items()}
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            raise BadRequest(str(e).splitlines()[0]) from None

    def metadata_json(self):
        out = {}
        for name, fn in self.model.signatures.items():
            out[name] = {"inputs": {k: {"dtype": "DT_" + s.dtype.name.upper(), "name": k}
                                    for k, s in fn.structured_input_signature[1].items()},
                         "outputs": {k: {"dtype": "DT_" + s.dtype.name.upper(), "name": k}
                                     for k, s in fn.structured_outputs.items()}}
        return out


def _json_value(array):
    if array.dtype.kind in "OS":
        return np.vectorize(lambda v: v.decode(), otypes=[object])(array).tolist()
    return array.tolist()


def make_handler(served):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            base = f"/v1/models/{served.name}"
            if self.path == base:
                self._send(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})
            elif self.path == base + "/metadata":
                self._send(200, {"model_spec": {"name": served.name, "version": "1"},
                                 "metadata": {"signature_def": {
                                     "signature_def": served.metadata_json()}}})
            else:
                self._send(404, {"error": f"Servable not found for request: {self.path}"})

        def do_POST(self):
            if self.path != f"/v1/models/{served.name}:predict":
                return self._send(404, {"error": f"Servable not found for request: {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                signature = body.get("signature_name", "serving_default")
                if "instances" in body:
                    rows = body["instances"]
                    if not rows or not all(isinstance(r, dict) for r in rows):
                        raise BadRequest("instances must be a non-empty list of objects")
                    inputs = {k: [r.get(k) for r in rows] for k in rows[0]}
                    outputs = served.run(signature, inputs)
                    predictions = [{k: _json_value(v[i]) if isinstance(v[i], np.ndarray) else
                                    _json_value(np.asarray(v[i])) for k, v in outputs.items()}
                                   for i in range(len(rows))]
                    return self._send(200, {"predictions": predictions})
                if "inputs" in body:
                    outputs = served.run(signature, body["inputs"])
                    return self._send(200, {"outputs": {k: _json_value(v) for k, v in outputs.items()}})
                raise BadRequest("Missing 'inputs' or 'instances' key")
            except (BadRequest, ValueError, TypeError) as e:
                self._send(400, {"error": str(e)})

    return Handler


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, served):
        self.served = served

    def Predict(self, request, context):
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            outputs = self.served.run(request.model_spec.signature_name or "serving_default", inputs)
        except BadRequest as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        response = predict_pb2.PredictResponse()
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, fn in self.served.model.signatures.items():
            signature = signatures.signature_def[name]
            for key, spec in fn.structured_input_signature[1].items():
                signature.inputs[key].name = key
                signature.inputs[key].dtype = spec.dtype.as_datatype_enum
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.served.name
        response.metadata["signature_def"].Pack(signatures)
        return response


class StandIn:
    """Serves one SavedModel on free local ports; use as a context manager."""

    def __init__(self, name, path):
        self.served = Served(name, path)

    def __enter__(self):
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.served))
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.served), self.grpc)
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()
        self.rest_port = self.http.server_address[1]
        return self

    def __exit__(self, *exc):
        self.http.shutdown()
        self.grpc.stop(None)
