"""The code of every logged quickdraw-cnn model (MLflow's models-from-code: no pickle).

MLflow copies this file into the model and runs it when the model is loaded;
`set_model` names the pyfunc it serves. Project code never imports it.
"""

from mlflow.models import set_model

from quickdraw_dag.serving.pyfunc import QuickDrawModel

set_model(QuickDrawModel())
