"""Drawings in and out: Google's formats, downloads, synthetic doodles, rasterizing, streaming batches."""
