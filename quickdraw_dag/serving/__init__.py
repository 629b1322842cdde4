"""Using the trained model: `predict`, the MLflow pyfunc served by `mlflow models serve`, the drawing page.

All three take drawings through one path, the training data's own:
strokes → Google's simplification (`formats.simplify`, for raw strokes) →
the preprocess rasterizer (`raster.rasterize`, at the image size and line
width recorded with the model) → the Keras model → the top-k labels.
"""
