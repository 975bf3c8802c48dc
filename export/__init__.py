"""Export of trained runs for serving (SavedModel in TF Serving's layout, LiteRT): see the export issue."""
