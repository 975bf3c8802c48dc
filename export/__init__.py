"""Writing trained runs for serving: SavedModels in TF Serving's layout (saved_model) and LiteRT files
(tflite). `python -m kerasgen.export` is the command; the model's family supplies what to export."""
