"""Real-time use of a trained student: streaming predictor, post-processing, unusual-input alert."""

from echodfkd.stream.alert import AlertConfig, AlertResult, fit_alert
from echodfkd.stream.predictor import ClipResult, FrameResult, Predictor, PredictorOptions, load_run

__all__ = ["AlertConfig", "AlertResult", "ClipResult", "FrameResult", "Predictor", "PredictorOptions", "fit_alert",
           "load_run"]
