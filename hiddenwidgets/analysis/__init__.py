"""Analyses: tensors in, numbers out (information, similarity, probes, representations, TCAV, interventions).

No widget code: views in ``hiddenwidgets.widgets`` call these."""
