"""Pipeline stages: capture, summaries, transport, recorders, the concept store, export. No widget code."""
