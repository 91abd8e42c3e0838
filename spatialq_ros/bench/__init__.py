"""`spatialq bench`: our W4A8 engines against what a user would pick instead, measured side by side."""
