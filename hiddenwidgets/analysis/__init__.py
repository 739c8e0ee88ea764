"""Analyses: tensors in, numbers out (information, similarity, probes, representations, TCAV, interventions,
feature visualization).

No widget code: views in ``hiddenwidgets.widgets`` call these."""
