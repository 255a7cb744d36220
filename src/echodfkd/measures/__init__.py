"""Measures shared by every stage: mask binarisation and overlap (masks), cardiac phases and aFD (phases).

They sit below the pipeline stages (they import only `echodfkd.errors`), so distillation's calibration,
the streaming predictor and the evaluation all use one definition of each.
"""
